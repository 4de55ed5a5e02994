import { describe, expect, it } from 'vitest';
import { moeRoute, moeRouteUsesSubgroups, type MoeRouteOptions } from '../../src/kernels/moe-route.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import { hasSubgroupsOf } from '../../src/kernels/subgroups.js';
import { sliceTensor } from '../../src/kernels/tensor.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { moeRouteRef } from '../reference/moe-route.js';

interface Shape {
  rows: number;
  experts: number;
  topK: number;
  normalize: boolean;
}

/**
 * Logits whose sorted neighbours are at least `gap` apart (spread over `span`), in a random
 * order per row: far from ties, so the GPU must choose exactly the reference's experts.
 */
function spacedLogits(rng: Rng, rows: number, experts: number, span = 16): Float32Array {
  const gap = Math.min(0.5, span / experts);
  const out = new Float32Array(rows * experts);
  for (let r = 0; r < rows; r++) {
    const shift = rng.uniform(-2, 2);
    rng.permutation(experts).forEach((rank, e) => {
      out[r * experts + e] = shift + (rank - experts / 2 + 0.37) * gap + rng.uniform(0, gap / 4);
    });
  }
  return out;
}

async function route(rt: KernelRuntime, logits: Float32Array, s: Shape): Promise<{ ids: Uint32Array; weights: Float32Array }> {
  const ids = poisoned(rt, 'u32', s.rows * s.topK);
  const weights = poisoned(rt, 'f32', s.rows * s.topK);
  const rec = rt.recorder();
  moeRoute(rt, rec, { logits: rt.upload('f32', logits), ids, weights, ...s });
  await rec.submit();
  return { ids: (await rt.read(ids)) as Uint32Array, weights: await rt.readFloats(weights) };
}

async function expectMatchesReference(rt: KernelRuntime, logits: Float32Array, s: Shape): Promise<void> {
  const got = await route(rt, logits, s);
  const want = moeRouteRef(logits, s.rows, s.experts, s.topK, s.normalize);
  expect(Array.from(got.ids)).toEqual(Array.from(want.ids));
  // relativeError is Infinity for any NaN, so a weight left unwritten never passes
  expect(relativeError(got.weights, want.weights)).toBeLessThanOrEqual(TOLERANCE.f32);
  if (s.normalize) {
    for (let r = 0; r < s.rows; r++) {
      const sum = got.weights.subarray(r * s.topK, (r + 1) * s.topK).reduce((a, b) => a + b, 0);
      expect(Math.abs(sum - 1), `row ${r} sums to ${sum}`).toBeLessThanOrEqual(1e-5);
    }
  }
}

// 'cpu': one subgroup per row where the adapter has subgroups of 8+ lanes (lavapipe does);
// 'gpu': the 64-wide workgroup with workgroup-memory reductions
describe.each(['cpu', 'gpu'] as const)('moeRoute (softmax, top-k, optional renormalisation), %s kernel profile', (kernelProfile) => {
  const runtime = useRuntime({ kernelProfile });

  it('runs the variant of its profile', () => {
    const rt = runtime();
    expect(moeRouteUsesSubgroups(rt)).toBe(kernelProfile === 'cpu' && hasSubgroupsOf(rt, 8));
  });

  const shapes: Shape[] = [];
  for (const rows of [1, 7, 33, 129])
    for (const experts of [1, 4, 7, 33, 60, 128, 129, 512])
      for (const topK of [1, 2, 4, 8].filter((k) => k <= experts))
        for (const normalize of [true, false]) shapes.push({ rows, experts, topK, normalize });

  for (const s of shapes) {
    it(`rows=${s.rows} experts=${s.experts} topK=${s.topK} normalize=${s.normalize}`, async () => {
      const rng = new Rng(s.rows * 7919 + s.experts * 31 + s.topK * 3 + (s.normalize ? 1 : 0));
      await expectMatchesReference(runtime(), spacedLogits(rng, s.rows, s.experts), s);
    });
  }

  it('the limits: experts=4096 topK=32', async () => {
    const s = { rows: 3, experts: 4096, topK: 32, normalize: true };
    await expectMatchesReference(runtime(), spacedLogits(new Rng(4096), s.rows, s.experts), s);
  });

  it('more than 65535 rows: the grid spills into y', async () => {
    const s = { rows: 70_000, experts: 8, topK: 2, normalize: false };
    await expectMatchesReference(runtime(), spacedLogits(new Rng(70_000), s.rows, s.experts), s);
  });

  it('logits past exp overflow stay finite (the max is subtracted first)', async () => {
    const s = { rows: 5, experts: 60, topK: 4, normalize: false };
    const logits = spacedLogits(new Rng(100), s.rows, s.experts).map((v) => v * 10 + 100);
    await expectMatchesReference(runtime(), logits, s);
  });

  it('ties go to the lower expert first, across invocations and within one', async () => {
    // experts 5, 69 and 133 share an invocation of the 64-wide workgroup and a lane of the
    // 8-lane subgroup; 7 and 100 share neither
    const experts = 140;
    const logits = new Float32Array(experts).map((_, e) => -1 - e / 1000);
    for (const e of [133, 100, 69, 7, 5]) logits[e] = 3;
    logits[50] = 2.5;
    logits[120] = 2.5;
    const s = { rows: 1, experts, topK: 8, normalize: true };
    const got = await route(runtime(), logits, s);
    expect(Array.from(got.ids)).toEqual([5, 7, 69, 100, 133, 50, 120, 0]);
    await expectMatchesReference(runtime(), logits, s);
  });

  it('equal rows of equal logits choose experts 0..topK-1 with equal weights', async () => {
    const s = { rows: 2, experts: 129, topK: 8, normalize: false };
    const got = await route(runtime(), new Float32Array(s.rows * s.experts).fill(0.75), s);
    expect(Array.from(got.ids)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7]);
    for (const w of got.weights) expect(Math.abs(w - 1 / 129)).toBeLessThanOrEqual(1e-7);
  });

  it('-0 and +0 tie, as their probabilities do', async () => {
    const s = { rows: 1, experts: 4, topK: 3, normalize: false };
    const got = await route(runtime(), Float32Array.from([-1, -0, 0, -0.5]), s);
    expect(Array.from(got.ids)).toEqual([1, 2, 3]);
  });

  it('reads and writes tensor views at an offset', async () => {
    const rt = runtime();
    const s = { rows: 3, experts: 33, topK: 4, normalize: true };
    const logits = spacedLogits(new Rng(33), s.rows, s.experts);
    const padded = new Float32Array(64 + logits.length);
    padded.set(logits, 64);
    const ids = poisoned(rt, 'u32', 64 + s.rows * s.topK);
    const weights = poisoned(rt, 'f32', 64 + s.rows * s.topK);
    const rec = rt.recorder();
    moeRoute(rt, rec, {
      logits: sliceTensor(rt.upload('f32', padded), 64, logits.length),
      ids: sliceTensor(ids, 64, s.rows * s.topK),
      weights: sliceTensor(weights, 64, s.rows * s.topK),
      ...s,
    });
    await rec.submit();
    const want = moeRouteRef(logits, s.rows, s.experts, s.topK, s.normalize);
    const gotIds = (await rt.read(ids)) as Uint32Array;
    expect(Array.from(gotIds.subarray(64))).toEqual(Array.from(want.ids));
    expect(Array.from(gotIds.subarray(0, 64))).toEqual(new Array(64).fill(0xdeadbeef));
    expect(relativeError((await rt.readFloats(weights)).subarray(64), want.weights)).toBeLessThanOrEqual(TOLERANCE.f32);
  });

  it('refuses bad arguments before recording', async () => {
    const rt = runtime();
    const rec = rt.recorder();
    const base: MoeRouteOptions = {
      logits: rt.tensor('f32', 2 * 64),
      ids: rt.tensor('u32', 2 * 8),
      weights: rt.tensor('f32', 2 * 8),
      rows: 2,
      experts: 64,
      topK: 8,
      normalize: true,
    };
    const call = (o: Partial<MoeRouteOptions>) => () => moeRoute(rt, rec, { ...base, ...o });
    expect(call({})).not.toThrow();
    const recorded = rec.dispatchCount;
    for (const bad of [0, -1, 2.5, NaN]) {
      expect(call({ rows: bad }), `rows ${bad}`).toThrow(RangeError);
      expect(call({ experts: bad }), `experts ${bad}`).toThrow(RangeError);
      expect(call({ topK: bad }), `topK ${bad}`).toThrow(RangeError);
    }
    expect(call({ experts: 4, topK: 5 })).toThrow(/topK 5 exceeds experts 4/);
    expect(call({ experts: 4097, logits: rt.tensor('f32', 2 * 4097) })).toThrow(/experts must be at most 4096/);
    expect(call({ topK: 33, ids: rt.tensor('u32', 66), weights: rt.tensor('f32', 66) })).toThrow(/topK must be at most 32/);
    expect(call({ logits: rt.tensor('f16', 128) })).toThrow(TypeError);
    expect(call({ weights: rt.tensor('u32', 16) })).toThrow(TypeError);
    expect(call({ ids: rt.tensor('f32', 16) })).toThrow(/ids must be u32/);
    expect(call({ logits: rt.tensor('f32', 127) })).toThrow(/logits has 127 elements, needs 128/);
    expect(call({ ids: rt.tensor('u32', 15) })).toThrow(/ids has 15 elements, needs 16/);
    expect(call({ weights: rt.tensor('f32', 15) })).toThrow(/weights has 15 elements, needs 16/);
    const shared = rt.tensor('f32', 256);
    expect(call({ logits: sliceTensor(shared, 0, 128), weights: sliceTensor(shared, 120, 16) })).toThrow(/overlap/);
    expect(rec.dispatchCount).toBe(recorded);
    await rec.submit();
  });
});
