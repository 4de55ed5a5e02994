import { describe, expect, it } from 'vitest';
import { moeWeightedSum, type MoeWeightedSumOptions } from '../../src/kernels/moe-sum.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import { sliceTensor } from '../../src/kernels/tensor.js';
import { poisoned, relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { Rng } from '../helpers/random.js';
import { moeWeightedSumRef } from '../reference/moe-sum.js';

const runtime = useRuntime();

interface Case {
  rows: number;
  topK: number;
  N: number;
  experts: number;
  accumulate?: boolean;
  /** Every third pair's id out of range, its row of y NaN (the grouped matmul never writes it). */
  outOfRange?: boolean;
  /** Elements of padding before each tensor in its buffer. */
  pad?: number;
}

async function runCase(rt: KernelRuntime, c: Case): Promise<number> {
  const { rows, topK, N, experts } = c;
  const pairs = rows * topK;
  const rng = new Rng(rows * 7919 + topK * 31 + N * 7 + experts);
  const y = rng.floats(pairs * N);
  const ids = Uint32Array.from({ length: pairs }, () => rng.int(experts));
  if (c.outOfRange) {
    for (let pair = 1; pair < pairs; pair += 3) {
      ids[pair] = pair % 2 ? experts : 0xffffffff;
      y.fill(NaN, pair * N, (pair + 1) * N);
    }
  }
  const routeWeights = rng.floats(pairs, 0, 1);
  const base = c.accumulate ? rng.floats(rows * N, -2, 2) : undefined;
  const pad = c.pad ?? 0;
  const padded = <T extends Float32Array | Uint32Array>(a: T): T => {
    const out = new (a.constructor as new (n: number) => T)(pad + a.length);
    out.set(a, pad);
    return out;
  };
  const yt = rt.upload('f32', padded(y));
  const idt = rt.upload('u32', padded(ids));
  const rwt = rt.upload('f32', padded(routeWeights));
  const out = base ? rt.upload('f32', padded(base)) : poisoned(rt, 'f32', pad + rows * N);
  try {
    const rec = rt.recorder();
    moeWeightedSum(rt, rec, {
      y: sliceTensor(yt, pad, pairs * N),
      ids: sliceTensor(idt, pad, pairs),
      routeWeights: sliceTensor(rwt, pad, pairs),
      out: sliceTensor(out, pad, rows * N),
      rows,
      topK,
      N,
      experts,
      accumulate: c.accumulate,
    });
    await rec.submit();
    const got = await rt.readFloats(out, pad, rows * N);
    return relativeError(got, moeWeightedSumRef(y, ids, routeWeights, rows, topK, N, experts, base));
  } finally {
    for (const t of [yt, idt, rwt, out]) rt.destroyBuffer(t.buffer);
  }
}

describe('moeWeightedSum against the float64 reference', () => {
  const cases: Case[] = [];
  for (const rows of [1, 7, 33])
    for (const topK of [1, 2, 8])
      for (const N of [1, 7, 260]) {
        const i = cases.length;
        cases.push({ rows, topK, N, experts: 16, accumulate: i % 2 === 1, outOfRange: i % 3 === 0 });
      }
  cases.push({ rows: 7, topK: 8, N: 33, experts: 3, accumulate: true, outOfRange: true, pad: 5 });
  // many rows of one column: 274 workgroups
  cases.push({ rows: 70_000, topK: 2, N: 1, experts: 4 });
  for (const c of cases) {
    const extras = [c.accumulate ? 'accumulate' : '', c.outOfRange ? 'ids out of range' : '', c.pad ? `offset ${c.pad}` : ''].filter(
      Boolean,
    );
    it(`rows=${c.rows} topK=${c.topK} N=${c.N} experts=${c.experts}${extras.length ? ' ' + extras.join(' ') : ''}`, async () => {
      expect(await runCase(runtime(), c)).toBeLessThanOrEqual(TOLERANCE.f32);
    });
  }

  it('refuses bad arguments before recording', async () => {
    const rt = runtime();
    const rec = rt.recorder();
    const base: MoeWeightedSumOptions = {
      y: rt.tensor('f32', 2 * 2 * 3),
      ids: rt.tensor('u32', 4),
      routeWeights: rt.tensor('f32', 4),
      out: rt.tensor('f32', 2 * 3),
      rows: 2,
      topK: 2,
      N: 3,
      experts: 4,
    };
    const call = (o: Partial<MoeWeightedSumOptions>) => () => moeWeightedSum(rt, rec, { ...base, ...o });
    expect(call({})).not.toThrow();
    const recorded = rec.dispatchCount;
    for (const bad of [0, -1, 2.5, NaN]) {
      for (const key of ['rows', 'topK', 'N', 'experts'] as const) expect(call({ [key]: bad }), `${key} ${bad}`).toThrow(RangeError);
    }
    expect(call({ y: rt.tensor('f32', 11) })).toThrow(/y has 11 elements, needs 12/);
    expect(call({ ids: rt.tensor('u32', 3) })).toThrow(/ids has 3 elements, needs 4/);
    expect(call({ routeWeights: rt.tensor('f32', 3) })).toThrow(/routeWeights has 3 elements, needs 4/);
    expect(call({ out: rt.tensor('f32', 5) })).toThrow(/out has 5 elements, needs 6/);
    expect(call({ ids: rt.tensor('f32', 4) })).toThrow(/ids must be u32/);
    expect(call({ y: rt.tensor('f16', 12) })).toThrow(TypeError);
    const shared = rt.tensor('f32', 4096);
    expect(call({ y: sliceTensor(shared, 0, 12), out: sliceTensor(shared, 8, 6) })).toThrow(/overlap/);
    expect(call({ y: sliceTensor(shared, 0, 12), out: sliceTensor(shared, 12, 6) })).toThrow(/out and y share a buffer/);
    // 4 KiB apart, past any binding alignment: Dawn still refuses the buffer written and read in one dispatch
    expect(call({ y: sliceTensor(shared, 0, 12), out: sliceTensor(shared, 1024, 6) })).toThrow(/out and y share a buffer/);
    expect(rec.dispatchCount).toBe(recorded);
    await rec.submit();
  });
});
