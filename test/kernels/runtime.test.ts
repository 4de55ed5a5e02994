import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { expandShader, loadShader, readShader } from '../../src/kernels/shader-source.js';
import { add } from '../../src/kernels/add.js';
import { params } from '../../src/kernels/params.js';
import { KernelRuntime, f32ToF16Bits, f16BitsToF32 } from '../../src/kernels/runtime.js';
import { sliceTensor } from '../../src/kernels/tensor.js';
import { useRuntime } from '../helpers/gpu.js';

const runtime = useRuntime();

describe('kernel runtime', () => {
  it('reports the adapter and raises binding limits above Dawn defaults where the adapter allows', () => {
    const rt = runtime();
    expect(rt.adapterName.length).toBeGreaterThan(0);
    expect(rt.ctx.limits.maxStorageBuffersPerShaderStage).toBe(rt.ctx.adapter.limits.maxStorageBuffersPerShaderStage);
    expect(rt.ctx.limits.maxBufferSize).toBe(rt.ctx.adapter.limits.maxBufferSize);
  });

  it('picks the kernel profile by the adapter unless told, and refuses an unknown one before any device exists', async () => {
    const rt = runtime();
    expect(rt.ctx.kernelProfile).toBe(rt.ctx.isCpuAdapter ? 'cpu' : 'gpu');
    const saved = process.env.AUTOGLM_KERNEL_PROFILE;
    process.env.AUTOGLM_KERNEL_PROFILE = 'fast';
    try {
      const err = await KernelRuntime.create().then(
        (r) => (r.destroy(), null),
        (e: unknown) => e,
      );
      expect(isAutoGlmError(err, 'invalid_request')).toBe(true);
      expect((err as { param?: string }).param).toBe('AUTOGLM_KERNEL_PROFILE');
      process.env.AUTOGLM_KERNEL_PROFILE = 'gpu';
      const gpu = await KernelRuntime.create();
      expect(gpu.ctx.kernelProfile).toBe('gpu');
      gpu.destroy();
    } finally {
      if (saved === undefined) delete process.env.AUTOGLM_KERNEL_PROFILE;
      else process.env.AUTOGLM_KERNEL_PROFILE = saved;
    }
  });

  it('creating and destroying runtimes over and over leaves no file descriptors behind (one Dawn instance per process)', async () => {
    // An app that loads and closes engines: each cycle used to leave a Vulkan instance's
    // memfd (and a few MB) behind on lavapipe.
    const openFds = (): number => readdirSync('/proc/self/fd').length;
    const cycle = async (): Promise<void> => {
      const rt = await KernelRuntime.create();
      rt.upload('f32', new Float32Array(1 << 16).fill(1));
      await rt.sync();
      rt.destroy();
    };
    await cycle(); // the first one may open what the process keeps (the instance, the driver)
    const before = openFds();
    for (let i = 0; i < 4; i++) await cycle();
    expect(openFds()).toBe(before);
  });

  it('turns a WGSL compile error into a typed gpu_validation_error with the compiler message', async () => {
    const rt = runtime();
    const kernel = rt.kernel({
      shader: 'broken',
      source: '@compute @workgroup_size(1) fn main() { let x: u32 = undefined_thing; }',
      bindings: [],
    });
    expect(kernel).toBeDefined();
    const err = await rt.sync().then(
      () => null,
      (e: unknown) => e,
    );
    expect(isAutoGlmError(err, 'gpu_validation_error')).toBe(true);
    expect((err as Error).message).toMatch(/undefined_thing/);
    // the device is still usable afterwards
    await rt.sync();
  });

  it('reports a GPU error from work outside any error scope (a queue write to a destroyed buffer) at the next sync, typed, once', async () => {
    const rt = runtime();
    const t = rt.tensor('f32', 16, 'doomed');
    t.buffer.destroy();
    rt.device.queue.writeBuffer(t.buffer, 0, new Float32Array(16));
    const err = await rt.sync().then(
      () => null,
      (e: unknown) => e,
    );
    expect(isAutoGlmError(err, 'gpu_validation_error')).toBe(true);
    expect((err as Error).message).toMatch(/destroyed/);
    // reported once; the device carries on
    await rt.sync();
    const ok = rt.upload('f32', new Float32Array([1, 2, 3, 4]));
    expect(Array.from(await rt.readFloats(ok))).toEqual([1, 2, 3, 4]);
  });

  it('reports scoped and uncaptured errors of one flush together: the next sync is clean', async () => {
    const rt = runtime();
    rt.kernel({ shader: 'broken-too', source: '@compute @workgroup_size(1) fn main() { let x: u32 = missing_thing; }', bindings: [] });
    const t = rt.tensor('f32', 16, 'doomed-too');
    t.buffer.destroy();
    rt.device.queue.writeBuffer(t.buffer, 0, new Float32Array(16));
    const err = await rt.sync().then(
      () => null,
      (e: unknown) => e,
    );
    expect((err as Error).message).toMatch(/missing_thing/);
    // the uncaptured error arrived in the same flush; it must not fail the next operation
    await rt.sync();
  });

  it('turns a lost device into gpu_device_lost for every later operation, without crashing', async () => {
    const rt = await KernelRuntime.create();
    try {
      const t = rt.upload('f32', new Float32Array([1, 2, 3, 4]));
      // what a driver reset or an unplugged GPU looks like to WebGPU
      rt.device.destroy();
      const deadline = Date.now() + 5000;
      while (rt.ctx.lostReason === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(rt.ctx.lostReason).toMatch(/destroyed/);
      const lost = (fn: () => unknown) => expect(fn).toThrow(expect.objectContaining({ code: 'gpu_device_lost' }));
      lost(() => rt.tensor('f32', 4));
      lost(() => rt.recorder());
      await expect(rt.read(t)).rejects.toMatchObject({ code: 'gpu_device_lost' });
      await expect(rt.sync()).rejects.toMatchObject({ code: 'gpu_device_lost' });
    } finally {
      rt.destroy();
    }
  });

  it('picks the adapter and backend from the environment, and says which filter matched nothing', async () => {
    const rt = runtime();
    const runtimeModule = new URL('../../dist/src/kernels/runtime.js', import.meta.url).href;
    const probe =
      `import { KernelRuntime } from ${JSON.stringify(runtimeModule)};` +
      `try { const rt = await KernelRuntime.create(); console.log(JSON.stringify({ adapter: rt.adapterName })); rt.destroy(); }` +
      `catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    // each in its own process: a Dawn instance with another backend must not share this one's
    const run = async (env: Record<string, string>) => {
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', probe], {
        env: { ...process.env, ...env },
        timeout: 60_000,
      });
      return JSON.parse(stdout.trim().split('\n').pop()!) as { adapter?: string; code?: string; message?: string };
    };
    const firstWord = rt.adapterName.split(/[\s:(]/)[0]!;
    const [byName, noSuchAdapter, noSuchBackend] = await Promise.all([
      run({ AUTOGLM_GPU_ADAPTER: firstWord }),
      run({ AUTOGLM_GPU_ADAPTER: 'no-such-adapter-xyz' }),
      // a backend this platform does not have (Metal exists only on macOS)
      run({ AUTOGLM_GPU_BACKEND: process.platform === 'darwin' ? 'd3d12' : 'metal' }),
    ]);
    expect(byName.adapter).toBe(rt.adapterName);
    for (const [r, filter] of [
      [noSuchAdapter, 'AUTOGLM_GPU_ADAPTER'],
      [noSuchBackend, 'AUTOGLM_GPU_BACKEND'],
    ] as const) {
      expect(r.code).toBe('gpu_unavailable');
      expect(r.message).toContain(filter);
      expect(r.message).toMatch(/setup-vulkan\.sh/);
    }
  });

  it('turns an oversized allocation into gpu_out_of_memory', () => {
    const rt = runtime();
    expect(() => rt.createBuffer(rt.ctx.limits.maxBufferSize + 16)).toThrow(
      expect.objectContaining({ code: 'gpu_out_of_memory', message: expect.stringMatching(/maxBufferSize/) }),
    );
  });

  it('records many dispatches with distinct params in one submit', async () => {
    const rt = runtime();
    const kernel = rt.kernel({
      shader: 'fill-test',
      source: `struct P { i: u32, v: f32 }
        @group(0) @binding(0) var<storage, read_write> out: array<f32>;
        @group(1) @binding(0) var<uniform> p: P;
        @compute @workgroup_size(1) fn main() { out[p.i] = p.v; }`,
      bindings: ['write'],
      params: true,
    });
    const n = 3000; // more than the arena's initial 1024 slots, so it grows mid-recording
    const out = rt.tensor('f32', n);
    const rec = rt.recorder();
    for (let i = 0; i < n; i++)
      rec.dispatch(
        kernel,
        [out],
        params()
          .u32(i)
          .f32(i * 0.5),
        [1],
      );
    await rec.submit();
    const got = await rt.readFloats(out);
    for (let i = 0; i < n; i++) expect(got[i]).toBe(i * 0.5);
  });

  it('binds storage to the end of its buffer, so that a kernel over fewer rows reuses its bind group', async () => {
    const rt = runtime();
    const a = rt.upload(
      'f32',
      Float32Array.from({ length: 64 }, (_, i) => i + 1),
    );
    const b = rt.upload(
      'f32',
      Float32Array.from({ length: 64 }, (_, i) => 100 * (i + 1)),
    );
    const out = rt.tensor('f32', 64);
    let afterFirst = 0;
    // what a step of 1, 5, 33 and 64 rows binds: the same buffers, shorter tensors
    for (const n of [1, 5, 33, 64]) {
      const rec = rt.recorder();
      rt.write(out, new Float32Array(64).fill(-1));
      add(rt, rec, sliceTensor(a, 0, n), sliceTensor(b, 0, n), sliceTensor(out, 0, n), n);
      await rec.submit();
      const got = await rt.readFloats(out);
      for (let i = 0; i < 64; i++) expect(got[i]).toBe(i < n ? 101 * (i + 1) : -1);
      if (n === 1) afterFirst = rt.cachedBindGroups;
    }
    // the first shape made the kernel's bind groups; the other three reused them
    expect(rt.cachedBindGroups).toBe(afterFirst);
  });

  it('builds generated defines once per compile, keyed by the plain defines alone', async () => {
    const rt = runtime();
    let builds = 0;
    const specFor = (v: number) => ({
      shader: 'generated-test',
      source: `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
        @compute @workgroup_size(1) fn main() { {{BODY}} }`,
      defines: { V: v },
      generated: () => {
        builds++;
        return { BODY: `out[0] = ${v}.0;` };
      },
      bindings: ['write'] as const,
    });
    const out = rt.tensor('f32', 1);
    // two pipelines over the same buffer: each must keep its own bind group and code
    for (const v of [3, 7, 3, 7]) {
      const rec = rt.recorder();
      rec.dispatch(rt.kernel(specFor(v)), [out], null, [1]);
      await rec.submit();
      expect((await rt.readFloats(out))[0]).toBe(v);
    }
    expect(builds).toBe(2);
  });
  it('converts f16 bits both ways with round-to-nearest-even', () => {
    const values = new Float32Array([0, 1, -2.5, 65504, 1e-7, 0.1, 3.14159]);
    const back = f16BitsToF32(f32ToF16Bits(values));
    expect(back[0]).toBe(0);
    expect(back[1]).toBe(1);
    expect(back[2]).toBe(-2.5);
    expect(back[3]).toBe(65504);
    expect(Math.abs(back[5]! - 0.1)).toBeLessThan(1e-4);
    expect(Math.abs(back[6]! - 3.14159)).toBeLessThan(2e-3);
  });

  it('expands #if blocks and {{defines}}', () => {
    expect(expandShader('a\n#if X\nb\n#else\nc\n#endif\n{{Y}}', { X: true, Y: 'f16' })).toBe('a\nb\nf16');
    expect(expandShader('#if !X\nb\n#endif', { X: false })).toBe('b');
    expect(() => expandShader('{{MISSING}}', {})).toThrow(/MISSING/);
  });

  it('replaces #include lines with the named shader file, whose #if blocks then expand', () => {
    const source = readShader('gemv');
    expect(source).not.toMatch(/^#include/m);
    expect(source).toContain(readShader('matmul-args').trimEnd());
    const vec4 = loadShader('gemv', {
      XV4: true,
      WF16: false,
      SPLITK: false,
      BIAS: false,
      TM: 1,
      WGN: 64,
      KS: 1,
      WB: 64,
      WT: 'f32',
      PARTIALS: 64,
    });
    expect(vec4).toContain('var<storage, read> x: array<vec4<f32>>');
    expect(vec4).not.toContain('var<storage, read> x: array<f32>');
  });
});
