import { describe, expect, it } from 'vitest';
import { BufferPool, bufferSizeClass } from '../../src/kernels/buffer-pool.js';
import { STORAGE_USAGE } from '../../src/kernels/runtime.js';
import { useRuntime } from '../helpers/gpu.js';

const runtime = useRuntime();

describe('buffer size classes', () => {
  it('rounds up to 2^k x {1, 1.25, 1.5, 1.75}, at least 256 bytes, wasting at most a quarter', () => {
    expect(bufferSizeClass(0)).toBe(256);
    expect(bufferSizeClass(1)).toBe(256);
    expect(bufferSizeClass(256)).toBe(256);
    expect(bufferSizeClass(257)).toBe(320);
    expect(bufferSizeClass(1000)).toBe(1024);
    expect(bufferSizeClass(1025)).toBe(1280);
    expect(bufferSizeClass(1536)).toBe(1536);
    expect(bufferSizeClass(1793)).toBe(2048);
    for (const n of [300, 4097, 65_537, 1_000_003, 123_456_789]) {
      const c = bufferSizeClass(n);
      expect(c).toBeGreaterThanOrEqual(n);
      expect(c).toBeLessThan(n * 1.25 + 1);
      expect(bufferSizeClass(c)).toBe(c);
    }
    expect(() => bufferSizeClass(-1)).toThrow(RangeError);
    expect(() => bufferSizeClass(NaN)).toThrow(RangeError);
  });
});

describe('buffer pool on the device', () => {
  /** A pool over the real device that counts what it destroys. */
  function pool(maxRetainedBytes?: number, maxPerClass = 3) {
    const rt = runtime();
    const destroyed: GPUBuffer[] = [];
    const p = new BufferPool({
      create: (size, usage, label) => rt.createBuffer(size, usage, label),
      destroy: (b) => {
        destroyed.push(b);
        rt.destroyBuffer(b);
      },
      ...(maxRetainedBytes !== undefined ? { maxRetainedBytes } : {}),
      maxPerClass,
    });
    return { rt, p, destroyed };
  }

  it('regrow keeps a per-step buffer while it has room, else gives it back for one at least twice as big', () => {
    const { p } = pool();
    const first = p.regrow(null, 10, 16, 64, STORAGE_USAGE, 'step');
    expect(first.capacity).toBe(64);
    expect(first.buffer.size).toBeGreaterThanOrEqual(64 * 16);
    const same = p.regrow(first, 64, 16, 64, STORAGE_USAGE, 'step');
    expect(same.buffer).toBe(first.buffer);
    expect(same.capacity).toBe(64);
    const grown = p.regrow(same, 65, 16, 64, STORAGE_USAGE, 'step');
    expect(grown.capacity).toBe(128);
    expect(grown.buffer.size).toBeGreaterThanOrEqual(128 * 16);
    // the outgrown one went back to the pool, to be handed out again
    expect(p.stats.retained).toBe(1);
    expect(p.regrow(null, 300, 1, 16, STORAGE_USAGE, 'step').capacity).toBe(300);
  });

  it('hands a released buffer out again for the same usage and size class, and a new one otherwise', () => {
    const { p } = pool();
    const a = p.acquire(1000, STORAGE_USAGE);
    expect(a.size).toBe(1024);
    p.release(a);
    expect(p.stats).toMatchObject({ created: 1, reused: 0, retained: 1, retainedBytes: 1024 });
    expect(p.acquire(900, STORAGE_USAGE)).toBe(a);
    expect(p.stats).toMatchObject({ created: 1, reused: 1, retained: 0, retainedBytes: 0 });
    p.release(a);
    // another class, another usage: fresh buffers
    const bigger = p.acquire(1100, STORAGE_USAGE);
    const staging = p.acquire(1000, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    expect(bigger).not.toBe(a);
    expect(staging).not.toBe(a);
    expect(p.stats.created).toBe(3);
    p.release(bigger);
    p.release(staging);
    p.clear();
  });

  it('destroys what it cannot keep: past the byte cap, past the per-class cap, and everything on clear', () => {
    const bytes = pool(4096 + 512);
    const [a, b, c] = [2048, 2048, 2048].map((n) => bytes.p.acquire(n, STORAGE_USAGE));
    bytes.p.release(a!);
    bytes.p.release(b!);
    expect(bytes.destroyed).toEqual([]);
    bytes.p.release(c!); // 6 KiB would pass the 4.5 KiB cap
    expect(bytes.destroyed).toEqual([c]);
    const small = [256, 256, 256].map((n) => bytes.p.acquire(n, STORAGE_USAGE));
    for (const s of small) bytes.p.release(s);
    // two fit in the last 512 bytes, the third does not
    expect(bytes.destroyed).toEqual([c, small[2]]);
    expect(bytes.p.stats).toMatchObject({ retained: 4, retainedBytes: 4608 });
    bytes.p.clear();
    expect(bytes.destroyed).toHaveLength(6);
    expect(bytes.p.stats).toMatchObject({ retained: 0, retainedBytes: 0 });

    const perClass = pool(1 << 20, 3);
    const four = [1, 2, 3, 4].map(() => perClass.p.acquire(256, STORAGE_USAGE));
    for (const s of four) perClass.p.release(s);
    expect(perClass.destroyed).toEqual([four[3]]);
    perClass.p.clear();
  });

  it('refuses buffers it did not hand out and double releases', () => {
    const { rt, p } = pool();
    const foreign = rt.createBuffer(256);
    expect(() => p.release(foreign)).toThrow(/did not come from this pool/);
    const a = p.acquire(256, STORAGE_USAGE);
    p.release(a);
    expect(() => p.release(a)).toThrow(/released twice/);
    rt.destroyBuffer(foreign);
    p.clear();
  });

  it("reuses the runtime's readback staging and keeps reads correct when a pooled tensor is recycled", async () => {
    const rt = runtime();
    const before = rt.pool.stats;
    const t = rt.pooledTensor('f32', 300);
    rt.write(
      t,
      Float32Array.from({ length: 300 }, (_, i) => i * 0.25 - 7),
    );
    const first = await rt.readFloats(t);
    expect(first[299]).toBe(299 * 0.25 - 7);
    // the second read of the same size takes the staging buffer the first one gave back
    await rt.readFloats(t);
    const after = rt.pool.stats;
    expect(after.reused - before.reused).toBeGreaterThanOrEqual(1);
    // recycled: new contents written after the release are what a read sees
    rt.releaseTensor(t);
    const again = rt.pooledTensor('f32', 290);
    expect(again.buffer).toBe(t.buffer);
    rt.write(again, new Float32Array(290).fill(3.5));
    const got = await rt.readFloats(again);
    expect(got.every((v) => v === 3.5)).toBe(true);
    rt.releaseTensor(again);
  });
});
