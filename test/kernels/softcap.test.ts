import { describe, expect, it } from 'vitest';
import { softcap } from '../../src/kernels/softcap.js';
import { sliceTensor } from '../../src/kernels/tensor.js';
import { Rng } from '../helpers/random.js';
import { relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { softcapRef } from '../reference/elementwise.js';

const runtime = useRuntime();

describe('softcap (x = cap * tanh(x / cap), in place)', () => {
  // 16 x 256000: a batch of Gemma 2's logits; 17e6: more than 65535 workgroups of 256, so the grid spills into y
  const cases = [
    { count: 1, cap: 30, spread: 100 },
    { count: 7, cap: 30, spread: 100 },
    { count: 4097, cap: 50, spread: 300 },
    { count: 16 * 256_000, cap: 30, spread: 80 },
    { count: 17_000_000, cap: 30, spread: 80 },
  ];
  for (const c of cases) {
    it(`count=${c.count} cap=${c.cap}`, async () => {
      const rt = runtime();
      const x = new Rng(c.count + c.cap).floats(c.count, -c.spread, c.spread);
      const t = rt.upload('f32', x);
      const rec = rt.recorder();
      softcap(rt, rec, { x: t, count: c.count, cap: c.cap });
      await rec.submit();
      const ref = softcapRef(x, c.cap);
      const got = await rt.readFloats(t);
      expect(relativeError(got, ref)).toBeLessThanOrEqual(TOLERANCE.f32);
      // the cap changed the values (scores past it are squashed), so the test cannot pass with the kernel doing nothing
      expect(relativeError(x, ref)).toBeGreaterThan(0.1);
      rt.destroyBuffer(t.buffer);
    });
  }

  it('stays finite and close in the tails (tanh of a large argument) and keeps 0', async () => {
    const rt = runtime();
    const cap = 30;
    const x = Float32Array.from([-3.4e38, -1e30, -1e4, -88, -30, -1, -1e-3, 0, 1e-3, 1, 30, 88, 1e4, 1e30, 3.4e38, Infinity, -Infinity]);
    const t = rt.upload('f32', x);
    const rec = rt.recorder();
    softcap(rt, rec, { x: t, count: x.length, cap });
    await rec.submit();
    const got = await rt.readFloats(t);
    const ref = softcapRef(x, cap);
    for (let i = 0; i < x.length; i++) {
      expect(Number.isFinite(got[i]!), `softcap(${x[i]}) = ${got[i]}`).toBe(true);
      // absolute, in units of the cap: f32 tanh near 0 is good to about an ulp of 1
      expect(Math.abs(got[i]! - ref[i]!), `softcap(${x[i]}) = ${got[i]}, want ${ref[i]}`).toBeLessThanOrEqual(1e-6 * cap);
    }
    expect(got[x.indexOf(0)]).toBe(0);
    expect(Math.abs(got[x.indexOf(1e4)]!)).toBeLessThanOrEqual(cap);
  });

  it('touches only the first count values of its view', async () => {
    const rt = runtime();
    const x = new Rng(5).floats(1000, -200, 200);
    const buffer = rt.upload('f32', x);
    // a view from element 64 (a 256-byte storage offset), 300 values capped, the rest left alone
    const view = sliceTensor(buffer, 64, 600);
    const rec = rt.recorder();
    softcap(rt, rec, { x: view, count: 300, cap: 20 });
    await rec.submit();
    const got = await rt.readFloats(buffer);
    const want = Float32Array.from(x);
    want.set(Float32Array.from(softcapRef(x.subarray(64, 364), 20)), 64);
    expect(relativeError(got.subarray(64, 364), want.subarray(64, 364))).toBeLessThanOrEqual(TOLERANCE.f32);
    expect(Array.from(got.subarray(0, 64))).toEqual(Array.from(x.subarray(0, 64)));
    expect(Array.from(got.subarray(364))).toEqual(Array.from(x.subarray(364)));
  });

  it('refuses bad arguments before recording', () => {
    const rt = runtime();
    const x = rt.tensor('f32', 16);
    const rec = rt.recorder();
    const call = (o: Partial<{ x: typeof x; count: number; cap: number }>) => () => softcap(rt, rec, { x, count: 16, cap: 30, ...o });
    for (const count of [0, -1, 2.5, NaN]) expect(call({ count }), `count ${count}`).toThrow(RangeError);
    expect(call({ count: 17 })).toThrow(/x has 16 elements, needs 17/);
    for (const cap of [0, -30, NaN, Infinity, 1e39, 1e-40])
      expect(call({ cap }), `cap ${cap}`).toThrow(/cap must be a positive finite f32/);
    expect(call({ x: rt.tensor('f16', 16) })).toThrow(TypeError);
    expect(call({ x: rt.tensor('u32', 16) })).toThrow(TypeError);
    expect(rec.dispatchCount).toBe(0);
  });
});
