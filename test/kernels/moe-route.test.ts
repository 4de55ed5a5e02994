import { describe, expect, it } from 'vitest';
import { moeRoute, moeRouteUsesSubgroups, type MoeRouteOptions } from '../../src/kernels/moe-route.js';
import type { Recorder } from '../../src/kernels/recorder.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import { hasSubgroupsOf } from '../../src/kernels/subgroups.js';
import { sliceTensor, type GpuTensor } from '../../src/kernels/tensor.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { bestFirst, moeRouteRef, sigmoidChoiceRef } from '../reference/moe-route.js';

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

/** The routing options beyond the shape, with the bias as host values. */
interface Routing {
  scoring?: 'softmax' | 'sigmoid';
  bias?: Float32Array;
  groups?: number;
  topkGroup?: number;
  scale?: number;
}

type Case = Shape & Routing;

async function route(rt: KernelRuntime, logits: Float32Array, s: Case): Promise<{ ids: Uint32Array; weights: Float32Array }> {
  const { bias, ...o } = s;
  const ids = poisoned(rt, 'u32', s.rows * s.topK);
  const weights = poisoned(rt, 'f32', s.rows * s.topK);
  const rec = rt.recorder();
  moeRoute(rt, rec, { ...o, logits: rt.upload('f32', logits), ids, weights, ...(bias && { choiceBias: rt.upload('f32', bias) }) });
  await rec.submit();
  return { ids: (await rt.read(ids)) as Uint32Array, weights: await rt.readFloats(weights) };
}

function reference(logits: Float32Array, s: Case): { ids: Uint32Array; weights: Float64Array } {
  return moeRouteRef(logits, s.rows, s.experts, s.topK, s.normalize, s);
}

async function expectMatchesReference(rt: KernelRuntime, logits: Float32Array, s: Case): Promise<void> {
  const got = await route(rt, logits, s);
  const want = reference(logits, s);
  expect(Array.from(got.ids)).toEqual(Array.from(want.ids));
  // relativeError is Infinity for any NaN, so a weight left unwritten never passes
  expect(relativeError(got.weights, want.weights)).toBeLessThanOrEqual(TOLERANCE.f32);
  if (s.normalize) {
    const scale = s.scale ?? 1;
    for (let r = 0; r < s.rows; r++) {
      const sum = got.weights.subarray(r * s.topK, (r + 1) * s.topK).reduce((a, b) => a + b, 0);
      expect(Math.abs(sum - scale), `row ${r} sums to ${sum}`).toBeLessThanOrEqual(1e-5 * scale);
    }
  }
}

/** How far apart f32 choice values must be in float64 for the GPU to rank them as the reference does. */
const CHOICE_GAP = 2e-5;

/**
 * Sigmoid-router inputs far from ties: a bias (when asked) in [-0.3, 0.3) shared by the rows,
 * and per row logits in [-4, 4), drawn again until the group scores are CHOICE_GAP apart and
 * so are the topK + 1 best choice values after the group mask, but for exact ties of masked
 * experts' 0.0, which both sides break lower expert first.
 */
function sigmoidInputs(rng: Rng, s: Case & { withBias: boolean }): { logits: Float32Array; bias?: Float32Array } {
  const bias = s.withBias ? rng.floats(s.experts, -0.3, 0.3) : undefined;
  const logits = new Float32Array(s.rows * s.experts);
  for (let r = 0; r < s.rows; r++) {
    for (let attempt = 0; ; attempt++) {
      if (attempt === 1000) throw new Error('no row far from ties');
      const row = rng.floats(s.experts, -4, 4);
      const { choice, groupScores } = sigmoidChoiceRef(row, bias, s.groups ?? 1, s.topkGroup ?? 1);
      const best = bestFirst(choice)
        .slice(0, s.topK + 1)
        .map((e) => choice[e]!);
      if (apart(groupScores.toSorted((a, b) => b - a)) && apart(best, true)) {
        logits.set(row, r * s.experts);
        break;
      }
    }
  }
  return { logits, ...(bias && { bias }) };
}

/** Whether sorted neighbours are CHOICE_GAP apart (or, with allowZeroTies, both exactly 0). */
function apart(sorted: number[], allowZeroTies = false): boolean {
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1]!, sorted[i]!];
    if (allowZeroTies && a === 0 && b === 0) continue;
    if (a - b < CHOICE_GAP) return false;
  }
  return true;
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** Calls moeRoute with valid arguments (2 rows of 64 experts, top 8) but for `o`'s. */
function refusalCall(rt: KernelRuntime, rec: Recorder): (o: Partial<MoeRouteOptions>) => () => void {
  const base: MoeRouteOptions = {
    logits: rt.tensor('f32', 2 * 64),
    ids: rt.tensor('u32', 2 * 8),
    weights: rt.tensor('f32', 2 * 8),
    rows: 2,
    experts: 64,
    topK: 8,
    normalize: true,
  };
  return (o) => () => moeRoute(rt, rec, { ...base, ...o });
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
    const call = refusalCall(rt, rec);
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

interface SigmoidShape extends Shape {
  withBias: boolean;
  groups: number;
  topkGroup: number;
  scale: number;
}

/**
 * Every expert count, topK 1-3 and 8, normalisation and bias without groups; every grouping (groups 4
 * and 8 where they divide the experts into groups of 2+, every topkGroup) with and without
 * bias. Rows, scale and the grouped cases' topK and normalisation drawn, to keep the count down.
 */
function sigmoidShapes(): SigmoidShape[] {
  const rng = new Rng(2025);
  const pick = <T>(values: readonly T[]): T => values[rng.int(values.length)]!;
  const drawn = () => ({ rows: pick([1, 7, 33]), scale: pick([1, 2.5]) });
  const shapes: SigmoidShape[] = [];
  for (const experts of [8, 60, 128, 160, 256]) {
    // topK 1, 2, 3 and 8: one pick, the smallest renormalisations, GLM-4.5's 8
    for (const topK of [1, 2, 3, 8])
      for (const normalize of [true, false])
        for (const withBias of [false, true]) shapes.push({ ...drawn(), experts, topK, normalize, withBias, groups: 1, topkGroup: 1 });
    for (const groups of [4, 8].filter((g) => experts % g === 0 && experts / g >= 2))
      for (let topkGroup = 1; topkGroup <= groups; topkGroup++)
        for (const withBias of [false, true])
          shapes.push({ ...drawn(), experts, topK: 1 + rng.int(8), normalize: pick([true, false]), withBias, groups, topkGroup });
  }
  return shapes;
}

describe.each(['cpu', 'gpu'] as const)('moeRoute (sigmoid, choice bias, expert groups, scale), %s kernel profile', (kernelProfile) => {
  const runtime = useRuntime({ kernelProfile });

  async function expectSigmoidMatches(s: SigmoidShape, seed: number): Promise<void> {
    const { withBias, ...shape } = s;
    const { logits, bias } = sigmoidInputs(new Rng(seed), s);
    await expectMatchesReference(runtime(), logits, { ...shape, scoring: 'sigmoid', ...(withBias && { bias }) });
  }

  for (const [i, s] of sigmoidShapes().entries()) {
    const name = `rows=${s.rows} experts=${s.experts} topK=${s.topK} normalize=${s.normalize} bias=${s.withBias} groups=${s.groups} topkGroup=${s.topkGroup} scale=${s.scale}`;
    it(name, () => expectSigmoidMatches(s, 1000 + i));
  }

  it('the limits: experts=4096 topK=32, 32 groups', async () => {
    const s = { rows: 3, experts: 4096, topK: 32, normalize: true, withBias: true, groups: 32, topkGroup: 5, scale: 2.5 };
    await expectSigmoidMatches(s, 4096);
  });

  it('group masking: a higher-scoring expert of a group left out loses to the picked group', async () => {
    // group 0 holds the best expert (0) but a poor second; group 1's two good experts score more
    const logits = Float32Array.from([5, -5, 1, 1, -3, -3, -3, -3]);
    const s = { rows: 1, experts: 8, topK: 2, normalize: false, scoring: 'sigmoid' as const };
    const ungrouped = await route(runtime(), logits, s);
    expect(Array.from(ungrouped.ids)).toEqual([0, 2]);
    const grouped = await route(runtime(), logits, { ...s, groups: 4, topkGroup: 1 });
    expect(Array.from(grouped.ids)).toEqual([2, 3]);
    expect(relativeError(grouped.weights, [sigmoid(1), sigmoid(1)])).toBeLessThanOrEqual(TOLERANCE.f32);
    await expectMatchesReference(runtime(), logits, { ...s, groups: 4, topkGroup: 1 });
  });

  it("masked experts choose with 0.0, not -inf: they beat a picked group's negative choices", async () => {
    // every score is sigmoid(0) = 0.5; group 0 (experts 0, 1) chooses with 0.2 and -0.1 and is
    // the best group (0.1 against -0.6); the other groups' experts, masked, choose with 0.0
    const logits = new Float32Array(8);
    const bias = Float32Array.from([-0.3, -0.6, -0.8, -0.8, -0.8, -0.8, -0.8, -0.8]);
    const s = { rows: 1, experts: 8, topK: 3, normalize: true, scoring: 'sigmoid' as const, bias, groups: 4, topkGroup: 1 };
    const got = await route(runtime(), logits, s);
    expect(Array.from(got.ids)).toEqual([0, 2, 3]);
    // the weights are the unbiased scores, masked or not
    expect(relativeError(got.weights, [1 / 3, 1 / 3, 1 / 3])).toBeLessThanOrEqual(TOLERANCE.f32);
    await expectMatchesReference(runtime(), logits, s);
  });

  it('the bias changes the choice, the weights are the unbiased scores', async () => {
    const logits = Float32Array.from([2, 0, -1, -2]);
    const s = { rows: 1, experts: 4, topK: 2, normalize: false, scoring: 'sigmoid' as const };
    expect(Array.from((await route(runtime(), logits, s)).ids)).toEqual([0, 1]);
    // expert 1 chooses with 0.5 + 0.5 = 1.0, ahead of expert 0's sigmoid(2) = 0.88
    const biased = await route(runtime(), logits, { ...s, bias: Float32Array.from([0, 0.5, 0, 0]) });
    expect(Array.from(biased.ids)).toEqual([1, 0]);
    expect(relativeError(biased.weights, [0.5, sigmoid(2)])).toBeLessThanOrEqual(TOLERANCE.f32);
  });

  it('scale multiplies the weights after normalisation, softmax and sigmoid', async () => {
    const rt = runtime();
    for (const scoring of ['softmax', 'sigmoid'] as const) {
      for (const normalize of [true, false]) {
        const s = { rows: 7, experts: 60, topK: 4, normalize, scoring };
        const logits = spacedLogits(new Rng(60), s.rows, s.experts, 8);
        const plain = await route(rt, logits, s);
        const scaled = await route(rt, logits, { ...s, scale: 2.5 });
        expect(Array.from(scaled.ids)).toEqual(Array.from(plain.ids));
        expect(
          relativeError(
            scaled.weights,
            plain.weights.map((w) => w * 2.5),
          ),
        ).toBeLessThanOrEqual(1e-6);
        await expectMatchesReference(rt, logits, { ...s, scale: 2.5 });
      }
    }
  });

  it('a NaN logit never displaces a real one, and ids stay in range', async () => {
    const logits = Float32Array.from([NaN, 1, -1, 0.5, NaN, NaN, 2, -2]);
    const s = { rows: 1, experts: 8, topK: 4, normalize: false, scoring: 'sigmoid' as const };
    expect(Array.from((await route(runtime(), logits, s)).ids)).toEqual([6, 1, 3, 2]);
    // group 0 (NaN, 1) and group 2 (NaN, NaN) score NaN and rank last: groups 3 and 1 are picked
    const grouped = await route(runtime(), logits, { ...s, groups: 4, topkGroup: 2 });
    expect(Array.from(grouped.ids)).toEqual([6, 3, 2, 7]);
  });

  it('reads the bias from a tensor view at an offset', async () => {
    const rt = runtime();
    const s = { rows: 7, experts: 64, topK: 8, normalize: true, withBias: true, groups: 8, topkGroup: 3, scale: 1 };
    const { logits, bias } = sigmoidInputs(new Rng(64), s);
    const padded = new Float32Array(64 + s.experts);
    padded.set(bias!, 64);
    const ids = poisoned(rt, 'u32', s.rows * s.topK);
    const weights = poisoned(rt, 'f32', s.rows * s.topK);
    const rec = rt.recorder();
    const { withBias: _, ...o } = s;
    moeRoute(rt, rec, {
      ...o,
      scoring: 'sigmoid',
      logits: rt.upload('f32', logits),
      ids,
      weights,
      choiceBias: sliceTensor(rt.upload('f32', padded), 64, s.experts),
    });
    await rec.submit();
    const want = reference(logits, { ...o, scoring: 'sigmoid', bias: bias! });
    expect(Array.from((await rt.read(ids)) as Uint32Array)).toEqual(Array.from(want.ids));
    expect(relativeError(await rt.readFloats(weights), want.weights)).toBeLessThanOrEqual(TOLERANCE.f32);
  });

  it('refuses bad new options before recording', async () => {
    const rt = runtime();
    const rec = rt.recorder();
    const call = refusalCall(rt, rec);
    const sigmoid = { scoring: 'sigmoid' } as const;
    expect(call({ scale: 2.5 })).not.toThrow();
    expect(call({ ...sigmoid, choiceBias: rt.tensor('f32', 64), groups: 8, topkGroup: 3, scale: 2.5 })).not.toThrow();
    expect(call({ ...sigmoid, groups: 32, topkGroup: 32 })).not.toThrow();
    const recorded = rec.dispatchCount;
    expect(call({ scoring: 'relu' as never })).toThrow(/scoring must be 'softmax' or 'sigmoid', got relu/);
    expect(call({ choiceBias: rt.tensor('f32', 64) })).toThrow(/choiceBias needs scoring 'sigmoid'/);
    expect(call({ groups: 4, topkGroup: 2 })).toThrow(/groups > 1 needs scoring 'sigmoid', got groups 4/);
    expect(call({ ...sigmoid, choiceBias: rt.tensor('f16', 64) })).toThrow(TypeError);
    expect(call({ ...sigmoid, choiceBias: rt.tensor('u32', 64) })).toThrow(TypeError);
    expect(call({ ...sigmoid, choiceBias: rt.tensor('f32', 63) })).toThrow(/choiceBias has 63 elements, needs 64/);
    const shared = rt.tensor('f32', 256);
    const sharedIds = rt.tensor('u32', 256);
    expect(call({ ...sigmoid, weights: sliceTensor(shared, 0, 16), choiceBias: sliceTensor(shared, 8, 64) })).toThrow(
      /choiceBias and weights overlap/,
    );
    // an f32 view of the ids' buffer
    const idsAsF32: GpuTensor = { ...sliceTensor(sharedIds, 0, 65), dtype: 'f32' };
    expect(call({ ...sigmoid, ids: sliceTensor(sharedIds, 64, 16), choiceBias: idsAsF32 })).toThrow(/choiceBias and ids overlap/);
    for (const bad of [0, -1, 2.5, NaN]) {
      expect(call({ ...sigmoid, groups: bad }), `groups ${bad}`).toThrow(RangeError);
      expect(call({ ...sigmoid, groups: 4, topkGroup: bad }), `topkGroup ${bad}`).toThrow(RangeError);
    }
    expect(call({ ...sigmoid, groups: 3 })).toThrow(/groups 3 does not divide experts 64/);
    expect(call({ ...sigmoid, groups: 64, topkGroup: 1 })).toThrow(/groups must be at most 32, got 64/);
    expect(call({ ...sigmoid, experts: 16, topK: 4, groups: 16 })).toThrow(/groups 16 leave fewer than 2 of 16 experts per group/);
    expect(call({ ...sigmoid, groups: 4, topkGroup: 5 })).toThrow(/topkGroup 5 exceeds groups 4/);
    expect(call({ ...sigmoid, topkGroup: 2 })).toThrow(/topkGroup 2 exceeds groups 1/);
    for (const bad of [0, -1, NaN, Infinity, 1e39, 1e-40]) {
      expect(call({ scale: bad }), `scale ${bad}`).toThrow(/scale must be a finite positive f32/);
      expect(call({ ...sigmoid, scale: bad }), `scale ${bad}`).toThrow(RangeError);
    }
    expect(rec.dispatchCount).toBe(recorded);
    await rec.submit();
  });
});
