import { describe, expect, it } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { INT8_GROUP_SIZE, quantizeInt8, type QuantizedInt8 } from '../../src/kernels/int8-quant.js';
import { moeGroup } from '../../src/kernels/moe-group.js';
import {
  moeGroupedSharesX,
  moeMatmul,
  moeMatmulGrouped,
  prepareMoeExperts,
  type MoeExpertWeight,
  type MoeGroupedOptions,
  type MoeMatmulOptions,
} from '../../src/kernels/moe-matmul.js';
import { moeWeightedSum } from '../../src/kernels/moe-sum.js';
import { f32ToF16Bits, type KernelRuntime } from '../../src/kernels/runtime.js';
import { hasSubgroupsOf } from '../../src/kernels/subgroups.js';
import { sliceTensor, type GpuTensor } from '../../src/kernels/tensor.js';
import { poisoned, relativeError, roundTo, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { Rng } from '../helpers/random.js';
import { dequantizeInt8Ref } from '../reference/int8.js';
import { moeCombineRef, moeExpandRef } from '../reference/moe-matmul.js';

const runtime = useRuntime();
// the grouped kernel has a variant per profile: 'cpu' shares x across the subgroup where
// the adapter has subgroups of 8+ lanes (lavapipe does), 'gpu' loads it in every lane
const PROFILES = ['cpu', 'gpu'] as const;
const profileRuntimes = { cpu: useRuntime({ kernelProfile: 'cpu' }), gpu: useRuntime({ kernelProfile: 'gpu' }) };

interface Shape {
  rows: number;
  topK: number;
  experts: number;
  N: number;
  K: number;
}

interface Case extends Shape {
  mode: 'expand' | 'combine';
  dtype: 'f32' | 'f16' | 'int8';
  /** int8: k per scale (default INT8_GROUP_SIZE). */
  groupSize?: number;
  /** int8: experts passed already quantized (QuantizedInt8) rather than as f32 values. */
  quantized?: boolean;
  accumulate?: boolean;
  /** Experts per weight part (maxPartBytes set to fit that many): several parts. */
  expertsPerPart?: number;
  /** Put some ids out of range (experts, experts + 5, 2^32 - 1): they act as zero experts. */
  outOfRange?: boolean;
  /** Elements of padding before x, ids, routeWeights and out in their buffers (slices at unaligned offsets). */
  pad?: number;
  /** Experts read through an async expertData (a loader awaiting file reads). */
  asyncLoad?: boolean;
}

function name(c: Case): string {
  const extras = [
    c.groupSize ? `group ${c.groupSize}` : '',
    c.quantized ? 'quantized data' : '',
    c.accumulate ? 'accumulate' : '',
    c.expertsPerPart ? `${c.expertsPerPart} experts per part` : '',
    c.outOfRange ? 'ids out of range' : '',
    c.pad ? `offset ${c.pad}` : '',
    c.asyncLoad ? 'async load' : '',
  ].filter(Boolean);
  return `${c.mode} ${c.dtype} rows=${c.rows} topK=${c.topK} experts=${c.experts} N=${c.N} K=${c.K}${extras.length ? ' ' + extras.join(' ') : ''}`;
}

/** Random ids with repeats (draws with replacement); with several parts, row 0 spans the first and last part. */
function randomIds(rng: Rng, c: Case): Uint32Array {
  const ids = new Uint32Array(c.rows * c.topK);
  for (let i = 0; i < ids.length; i++) ids[i] = rng.int(c.experts);
  if (c.topK >= 2) {
    ids[0] = 0;
    ids[1] = c.experts - 1;
  }
  if (c.outOfRange) {
    const bad = [c.experts, c.experts + 5, 0xffffffff];
    for (let i = 0; i < ids.length; i += 3) ids[i] = bad[(i / 3) % bad.length]!;
  }
  return ids;
}

/** A tensor holding `data` after `pad` elements of random padding, and the slice of it that holds `data`. */
function uploadPadded(rt: KernelRuntime, data: Float32Array | Uint32Array, pad: number, rng: Rng): { slice: GpuTensor; all: GpuTensor } {
  const dtype = data instanceof Float32Array ? 'f32' : 'u32';
  const host = data instanceof Float32Array ? new Float32Array(pad + data.length) : new Uint32Array(pad + data.length);
  for (let i = 0; i < pad; i++) host[i] = rng.int(1000);
  host.set(data, pad);
  const all = rt.upload(dtype, host);
  return { slice: sliceTensor(all, pad, data.length), all };
}

/** The relative error a case must stay within: int8 experts are compared with their dequantized values, so f32's. */
function tolerance(c: Case): number {
  return TOLERANCE[c.dtype === 'int8' ? 'f32' : c.dtype];
}

/** Weights whose magnitude changes every 16 values, so that the int8 scales differ from group to group and row to row. */
function varyingWeights(rng: Rng, length: number): Float32Array {
  const w = rng.floats(length);
  for (let i = 0; i < length; i += 16) {
    const m = 10 ** rng.uniform(-3, 1);
    for (let j = i; j < Math.min(i + 16, length); j++) w[j] = w[j]! * m;
  }
  return w;
}

/**
 * The case's experts, uploaded, and the values the reference multiplies by: the stored
 * ones (f16-rounded for 'f16'; for 'int8' the dequantized q * scale in float64, so that the
 * kernels are checked exactly and the quantization on its own).
 */
async function uploadExperts(rt: KernelRuntime, rng: Rng, c: Case): Promise<{ weight: MoeExpertWeight; W: ArrayLike<number>[] }> {
  const { experts, N, K, dtype } = c;
  let W: ArrayLike<number>[];
  let expertBytes: number;
  let expertData: (e: number) => Float32Array | Uint16Array | QuantizedInt8;
  if (dtype === 'int8') {
    const groupSize = c.groupSize ?? INT8_GROUP_SIZE;
    const originals = Array.from({ length: experts }, () => varyingWeights(rng, N * K));
    // prepareMoeExperts quantizes f32 data with the same quantizeInt8Into, so these are what it stores either way
    const quantized = originals.map((w) => quantizeInt8(w, N, K, groupSize));
    W = quantized.map((q) => dequantizeInt8Ref(q.q, q.scales, N, K, groupSize));
    expertBytes = N * K + 4 * N * Math.ceil(K / groupSize);
    expertData = (e) => (c.quantized ? quantized[e]! : originals[e]!);
  } else {
    const values = Array.from({ length: experts }, () => roundTo(dtype, rng.floats(N * K)));
    W = values;
    expertBytes = N * K * (dtype === 'f16' ? 2 : 4);
    expertData = (e) => (dtype === 'f16' ? f32ToF16Bits(values[e]!) : values[e]!);
  }
  const init = {
    experts,
    N,
    K,
    dtype,
    groupSize: c.groupSize,
    maxPartBytes: c.expertsPerPart ? c.expertsPerPart * expertBytes + 3 : undefined,
  };
  const weight = c.asyncLoad
    ? await prepareMoeExperts(rt, { ...init, expertData: async (e) => expertData(e) })
    : prepareMoeExperts(rt, { ...init, expertData });
  return { weight, W };
}

/** Seeds each case's random data from its shape and dtype. */
function caseSeed(c: Case): number {
  return c.rows * 7919 + c.topK * 104729 + c.experts * 1299709 + c.N * 31 + c.K * 13 + ['f32', 'f16', 'int8'].indexOf(c.dtype);
}

/** Runs one case against the float64 reference; returns the relative error and the number of weight parts. */
async function runCase(rt: KernelRuntime, c: Case): Promise<{ err: number; parts: number }> {
  const { rows, topK, experts, N, K, mode } = c;
  const rng = new Rng(caseSeed(c));
  const { weight, W } = await uploadExperts(rt, rng, c);
  const pairs = rows * topK;
  const combine = mode === 'combine';
  const x = rng.floats((combine ? pairs : rows) * K);
  const ids = randomIds(rng, c);
  const routeWeights = rng.floats(pairs, 0, 1);
  const outLength = (combine ? rows : pairs) * N;
  const base = c.accumulate ? rng.floats(outLength, -2, 2) : undefined;
  // x slices start at a 16-byte boundary (vec4 reads), the rest anywhere
  const pad = c.pad ?? 0;
  const xt = uploadPadded(rt, x, 4 * pad, rng);
  const idt = uploadPadded(rt, ids, pad, rng);
  const rwt = uploadPadded(rt, routeWeights, pad + 1, rng);
  const out = base ? uploadPadded(rt, base, pad + 2, rng) : { all: poisoned(rt, 'f32', pad + 2 + outLength), slice: undefined };
  const outSlice = out.slice ?? sliceTensor(out.all, pad + 2, outLength);
  try {
    const rec = rt.recorder();
    moeMatmul(rt, rec, {
      mode,
      x: xt.slice,
      weight,
      ids: idt.slice,
      routeWeights: combine ? rwt.slice : undefined,
      out: outSlice,
      rows,
      topK,
      accumulate: c.accumulate,
    });
    await rec.submit();
    const got = await rt.readFloats(out.all, pad + 2, outLength);
    const ref = combine ? moeCombineRef(x, W, ids, routeWeights, rows, topK, N, K, base) : moeExpandRef(x, W, ids, rows, topK, N, K);
    if (c.outOfRange && !combine) {
      // the zero rows of out-of-range ids must be exact zeros, not merely small
      for (let pair = 0; pair < pairs; pair++) {
        if (ids[pair]! < experts) continue;
        for (let n = 0; n < N; n++) expect(got[pair * N + n], `pair ${pair} n ${n}`).toBe(0);
      }
    }
    return { err: relativeError(got, ref), parts: weight.parts.length };
  } finally {
    weight.destroy();
    for (const t of [xt.all, idt.all, rwt.all, out.all]) rt.destroyBuffer(t.buffer);
  }
}

// Every value of rows (1, 2, 7, 33), topK (1, 2, 8), experts (1, 3, 8, 33), N (1, 7, 33,
// 129, 260) and K (4, 8, 36, 132, 1028) appears, with topK > experts (repeats forced) and
// more rows x columns than one workgroup; N x K x pairs stays small for lavapipe.
const SHAPES: Shape[] = [
  { rows: 1, topK: 1, experts: 1, N: 1, K: 4 },
  { rows: 1, topK: 8, experts: 33, N: 260, K: 132 },
  { rows: 2, topK: 2, experts: 3, N: 7, K: 8 },
  { rows: 7, topK: 2, experts: 8, N: 33, K: 1028 },
  { rows: 33, topK: 8, experts: 8, N: 129, K: 36 },
  { rows: 33, topK: 1, experts: 3, N: 260, K: 4 },
  { rows: 7, topK: 8, experts: 3, N: 129, K: 132 },
  { rows: 2, topK: 8, experts: 33, N: 1, K: 1028 },
  { rows: 33, topK: 2, experts: 33, N: 33, K: 8 },
  { rows: 1, topK: 2, experts: 1, N: 7, K: 36 },
];

function itMatchesReference(list: Case[], minParts = 1): void {
  for (const c of list) {
    it(name(c), async () => {
      const { err, parts } = await runCase(runtime(), c);
      expect(parts).toBeGreaterThanOrEqual(minParts);
      expect(err).toBeLessThanOrEqual(tolerance(c));
    });
  }
}

describe('moeMatmul: expand and combine against the float64 reference', () => {
  const cases: Case[] = [];
  for (const dtype of ['f32', 'f16'] as const) {
    for (const [i, shape] of SHAPES.entries()) {
      cases.push({ ...shape, dtype, mode: 'expand' });
      // accumulate on alternate shapes, so that both dtypes see both
      cases.push({ ...shape, dtype, mode: 'combine', accumulate: (i + (dtype === 'f16' ? 1 : 0)) % 2 === 1 });
    }
  }
  itMatchesReference(cases);
});

describe('moeMatmul: experts split into several parts', () => {
  const cases: Case[] = [];
  for (const dtype of ['f32', 'f16'] as const) {
    // parts of 3, 3, 2 experts; 10, 10, 10, 3; and one expert each
    const split: [Shape, number][] = [
      [{ rows: 7, topK: 8, experts: 8, N: 33, K: 36 }, 3],
      [{ rows: 2, topK: 8, experts: 33, N: 129, K: 8 }, 10],
      [{ rows: 33, topK: 2, experts: 3, N: 7, K: 132 }, 1],
    ];
    for (const [shape, expertsPerPart] of split) {
      cases.push({ ...shape, dtype, mode: 'expand', expertsPerPart });
      cases.push({ ...shape, dtype, mode: 'combine', expertsPerPart });
      cases.push({ ...shape, dtype, mode: 'combine', expertsPerPart, accumulate: true });
    }
    cases.push({ ...split[0]![0], dtype, mode: 'combine', expertsPerPart: 3, asyncLoad: true });
  }
  itMatchesReference(cases, 3);
});

describe('moeMatmul: ids out of range act as zero experts', () => {
  const cases: Case[] = [];
  for (const dtype of ['f32', 'f16'] as const) {
    for (const expertsPerPart of [undefined, 2]) {
      const shape = { rows: 7, topK: 2, experts: 5, N: 33, K: 36 };
      cases.push({ ...shape, dtype, mode: 'expand', outOfRange: true, expertsPerPart });
      cases.push({ ...shape, dtype, mode: 'combine', outOfRange: true, expertsPerPart });
      cases.push({ ...shape, dtype, mode: 'combine', outOfRange: true, expertsPerPart, accumulate: true });
    }
  }
  itMatchesReference(cases);
});

describe('moeMatmul: tensors at unaligned offsets, and a grid past 65535 workgroups', () => {
  itMatchesReference([
    { rows: 7, topK: 2, experts: 3, N: 33, K: 36, dtype: 'f32', mode: 'expand', pad: 5 },
    { rows: 7, topK: 2, experts: 3, N: 33, K: 36, dtype: 'f16', mode: 'combine', pad: 3, accumulate: true, expertsPerPart: 1 },
    // 8750 x 8 pairs of one column block: 70,000 workgroups, folded into y
    { rows: 8750, topK: 8, experts: 3, N: 1, K: 4, dtype: 'f32', mode: 'expand' },
    { rows: 70_000, topK: 1, experts: 3, N: 7, K: 4, dtype: 'f32', mode: 'combine' },
  ]);
});

describe('moeMatmul: argument checks', () => {
  function setup(rt: KernelRuntime): { weight: MoeExpertWeight; base: MoeMatmulOptions } {
    const weight = prepareMoeExperts(rt, { experts: 2, N: 3, K: 4, dtype: 'f32', expertData: () => new Float32Array(12) });
    const base: MoeMatmulOptions = {
      mode: 'combine',
      x: rt.tensor('f32', 2 * 2 * 4),
      weight,
      ids: rt.tensor('u32', 4),
      routeWeights: rt.tensor('f32', 4),
      out: rt.tensor('f32', 2 * 3),
      rows: 2,
      topK: 2,
    };
    return { weight, base };
  }

  it('rejects K not a multiple of 4, wrong expert data, and an expert larger than a binding', () => {
    const rt = runtime();
    const init = { experts: 2, N: 3, K: 4, dtype: 'f32' as const, expertData: () => new Float32Array(12) };
    expect(() => prepareMoeExperts(rt, { ...init, K: 6, expertData: () => new Float32Array(18) })).toThrow(/K must be a multiple of 4/);
    expect(() => prepareMoeExperts(rt, { ...init, expertData: () => new Float32Array(11) })).toThrow(
      /expert 0 has 11 elements, \[3, 4\] needs 12/,
    );
    expect(() => prepareMoeExperts(rt, { ...init, dtype: 'f16' })).toThrow(TypeError);
    expect(() => prepareMoeExperts(rt, { ...init, experts: 0 })).toThrow(RangeError);
    let caught: unknown;
    try {
      prepareMoeExperts(rt, { ...init, maxPartBytes: 40 });
    } catch (e) {
      caught = e;
    }
    expect(isAutoGlmError(caught, 'gpu_out_of_memory')).toBe(true);
    expect((caught as Error).message).toMatch(/48 bytes.*\(40 bytes\)/);
  });

  it('rejects a bad expert from an async loader', async () => {
    const rt = runtime();
    const init = { experts: 3, N: 3, K: 4, dtype: 'f32' as const, maxPartBytes: 48 };
    const load = prepareMoeExperts(rt, { ...init, expertData: async (e) => new Float32Array(e === 2 ? 11 : 12) });
    await expect(load).rejects.toThrow(/expert 2 has 11 elements/);
  });

  it('rejects wrong lengths, dtypes, a missing routeWeights and overlapping outputs', () => {
    const rt = runtime();
    const { weight, base } = setup(rt);
    const rec = rt.recorder();
    expect(() => moeMatmul(rt, rec, { ...base, weight: { ...weight, K: 6 } })).toThrow(/K must be a multiple of 4/);
    expect(() => moeMatmul(rt, rec, { ...base, x: rt.tensor('f32', 15) })).toThrow(/x has 15 elements, needs 16/);
    expect(() => moeMatmul(rt, rec, { ...base, ids: rt.tensor('u32', 3) })).toThrow(/ids has 3 elements, needs 4/);
    expect(() => moeMatmul(rt, rec, { ...base, out: rt.tensor('f32', 5) })).toThrow(/out has 5 elements, needs 6/);
    expect(() => moeMatmul(rt, rec, { ...base, routeWeights: rt.tensor('f32', 3) })).toThrow(/routeWeights has 3/);
    expect(() => moeMatmul(rt, rec, { ...base, routeWeights: undefined })).toThrow(/needs routeWeights/);
    expect(() => moeMatmul(rt, rec, { ...base, ids: rt.tensor('f32', 4) })).toThrow(TypeError);
    expect(() => moeMatmul(rt, rec, { ...base, x: rt.tensor('f16', 16) })).toThrow(TypeError);
    expect(() => moeMatmul(rt, rec, { ...base, rows: 0 })).toThrow(RangeError);
    expect(() => moeMatmul(rt, rec, { ...base, out: { ...base.x, length: 6 } })).toThrow(/overlap/);
    expect(() => moeMatmul(rt, rec, { ...base, x: sliceTensor(rt.tensor('f32', 20), 1, 16) })).toThrow(/16-byte boundary/);
    // expand: x [rows, K], out [rows * topK, N]; accumulate is combine's
    const expand = { ...base, mode: 'expand' as const, x: rt.tensor('f32', 8), out: rt.tensor('f32', 12) };
    expect(() => moeMatmul(rt, rec, { ...expand, out: rt.tensor('f32', 11) })).toThrow(/out has 11 elements, needs 12/);
    expect(() => moeMatmul(rt, rec, { ...expand, x: rt.tensor('f32', 7) })).toThrow(/x has 7 elements, needs 8/);
    expect(() => moeMatmul(rt, rec, { ...expand, accumulate: true })).toThrow(/combine/);
    expect(() => moeMatmul(rt, rec, expand)).not.toThrow();
    weight.destroy();
  });
});

/**
 * The grouped path on one case: moeGroup, then moeMatmulGrouped ('row' for expand; 'pair'
 * and moeWeightedSum for combine), recorded together, against the same float64 references
 * as moeMatmul. Expand's rows of out-of-range ids must stay unwritten (NaN).
 */
async function runGroupedCase(rt: KernelRuntime, c: Case): Promise<{ err: number; parts: number }> {
  const { rows, topK, experts, N, K, mode } = c;
  const rng = new Rng(caseSeed(c) + 5);
  const { weight, W } = await uploadExperts(rt, rng, c);
  const pairs = rows * topK;
  const combine = mode === 'combine';
  const x = rng.floats((combine ? pairs : rows) * K);
  const ids = randomIds(rng, c);
  const routeWeights = rng.floats(pairs, 0, 1);
  const base = c.accumulate ? rng.floats(rows * N, -2, 2) : undefined;
  const pad = c.pad ?? 0;
  const xt = uploadPadded(rt, x, 4 * pad, rng);
  const idt = uploadPadded(rt, ids, pad, rng);
  const rwt = uploadPadded(rt, routeWeights, pad + 1, rng);
  const offsets = poisoned(rt, 'u32', pad + experts + 1);
  const order = poisoned(rt, 'u32', pad + 2 + pairs);
  const y = poisoned(rt, 'f32', pad + 3 + pairs * N);
  const out = base ? uploadPadded(rt, base, pad + 2, rng).all : poisoned(rt, 'f32', pad + 2 + rows * N);
  try {
    const rec = rt.recorder();
    const groups = { offsets: sliceTensor(offsets, pad, experts + 1), order: sliceTensor(order, pad + 2, pairs) };
    moeGroup(rt, rec, { ids: idt.slice, pairs, experts, ...groups });
    const yt = sliceTensor(y, pad + 3, pairs * N);
    moeMatmulGrouped(rt, rec, { input: combine ? 'pair' : 'row', x: xt.slice, weight, ...groups, out: yt, pairs, topK });
    if (combine) {
      const sumOut = sliceTensor(out, pad + 2, rows * N);
      moeWeightedSum(rt, rec, {
        y: yt,
        ids: idt.slice,
        routeWeights: rwt.slice,
        out: sumOut,
        rows,
        topK,
        N,
        experts,
        accumulate: c.accumulate,
      });
    }
    await rec.submit();
    if (combine) {
      const got = await rt.readFloats(out, pad + 2, rows * N);
      return { err: relativeError(got, moeCombineRef(x, W, ids, routeWeights, rows, topK, N, K, base)), parts: weight.parts.length };
    }
    const got = await rt.readFloats(y, pad + 3, pairs * N);
    const ref = moeExpandRef(x, W, ids, rows, topK, N, K);
    // rows of out-of-range ids are not written: they keep the poison, and the comparison skips them
    const valid: number[] = [];
    const validRef: number[] = [];
    for (let pair = 0; pair < pairs; pair++) {
      const row = got.subarray(pair * N, (pair + 1) * N);
      if (ids[pair]! >= experts) {
        expect(row.every(Number.isNaN), `pair ${pair} (id ${ids[pair]}) left unwritten`).toBe(true);
        continue;
      }
      valid.push(...row);
      validRef.push(...ref.subarray(pair * N, (pair + 1) * N));
    }
    return { err: relativeError(valid, validRef), parts: weight.parts.length };
  } finally {
    weight.destroy();
    for (const t of [xt.all, idt.all, rwt.all, offsets, order, y, out]) rt.destroyBuffer(t.buffer);
  }
}

// Every value of rows (1, 2, 7, 16, 33), topK (1, 2, 8), experts (1, 3, 16, 33), N (1, 7,
// 33, 260) and K (4, 36, 1028) appears, with topK > experts (repeats forced), groups of
// several chunks of 8 pairs plus a remainder, and groups of exactly one and two chunks.
const GROUPED_SHAPES: Shape[] = [
  { rows: 1, topK: 8, experts: 1, N: 33, K: 36 },
  { rows: 2, topK: 8, experts: 1, N: 7, K: 4 },
  { rows: 1, topK: 1, experts: 1, N: 1, K: 4 },
  { rows: 1, topK: 8, experts: 16, N: 260, K: 36 },
  { rows: 2, topK: 2, experts: 3, N: 7, K: 1028 },
  { rows: 7, topK: 8, experts: 3, N: 33, K: 36 },
  { rows: 16, topK: 8, experts: 16, N: 260, K: 4 },
  { rows: 33, topK: 2, experts: 33, N: 7, K: 36 },
  { rows: 33, topK: 8, experts: 16, N: 33, K: 1028 },
  { rows: 16, topK: 1, experts: 33, N: 1, K: 1028 },
  { rows: 7, topK: 2, experts: 1, N: 260, K: 4 },
  { rows: 2, topK: 8, experts: 33, N: 33, K: 36 },
];

function itGroupedMatchesReference(rt: () => KernelRuntime, list: Case[], minParts = 1): void {
  for (const c of list) {
    it(name(c), async () => {
      const { err, parts } = await runGroupedCase(rt(), c);
      expect(parts).toBeGreaterThanOrEqual(minParts);
      expect(err).toBeLessThanOrEqual(tolerance(c));
    });
  }
}

describe.each(PROFILES)(
  'grouped path: moeGroup + moeMatmulGrouped (+ moeWeightedSum) equal expand and combine, %s kernel profile',
  (profile) => {
    const rt = profileRuntimes[profile];
    it('runs the variant of its profile', () => {
      expect(moeGroupedSharesX(rt())).toBe(profile === 'cpu' && hasSubgroupsOf(rt(), 8));
    });

    const cases: Case[] = [];
    for (const dtype of ['f32', 'f16'] as const) {
      for (const [i, shape] of GROUPED_SHAPES.entries()) {
        cases.push({ ...shape, dtype, mode: 'expand' });
        cases.push({ ...shape, dtype, mode: 'combine', accumulate: (i + (dtype === 'f16' ? 1 : 0)) % 2 === 1 });
      }
    }
    itGroupedMatchesReference(rt, cases);
  },
);

describe.each(PROFILES)('grouped path: experts in several parts, ids out of range, unaligned offsets, %s kernel profile', (profile) => {
  const rt = profileRuntimes[profile];
  const split: Case[] = [];
  const other: Case[] = [];
  for (const dtype of ['f32', 'f16'] as const) {
    // parts of 5, 5, 5, 1 experts; 10, 10, 10, 3; and one expert each
    const shapes: [Shape, number][] = [
      [{ rows: 7, topK: 8, experts: 16, N: 33, K: 36 }, 5],
      [{ rows: 33, topK: 2, experts: 33, N: 7, K: 36 }, 10],
      [{ rows: 7, topK: 8, experts: 3, N: 260, K: 36 }, 1],
    ];
    for (const [shape, expertsPerPart] of shapes) {
      for (const mode of ['expand', 'combine'] as const)
        split.push({ ...shape, dtype, mode, expertsPerPart, accumulate: mode === 'combine' });
    }
    const shape = { rows: 7, topK: 2, experts: 5, N: 33, K: 36 };
    for (const mode of ['expand', 'combine'] as const) {
      other.push({ ...shape, dtype, mode, outOfRange: true, expertsPerPart: 2 });
      other.push({ ...shape, dtype, mode, pad: 5, accumulate: mode === 'combine' });
    }
  }
  itGroupedMatchesReference(rt, split, 3);
  itGroupedMatchesReference(rt, other);
});

describe('moeMatmulGrouped: argument checks', () => {
  it('rejects wrong lengths, dtypes, shapes and overlapping outputs', () => {
    const rt = runtime();
    const weight = prepareMoeExperts(rt, { experts: 2, N: 3, K: 4, dtype: 'f32', expertData: () => new Float32Array(12) });
    // 2 rows x topK 2: 'row' x [2, 4], out [4, 3]
    const base: MoeGroupedOptions = {
      input: 'row',
      x: rt.tensor('f32', 8),
      weight,
      offsets: rt.tensor('u32', 3),
      order: rt.tensor('u32', 4),
      out: rt.tensor('f32', 12),
      pairs: 4,
      topK: 2,
    };
    const rec = rt.recorder();
    const call = (o: Partial<MoeGroupedOptions>) => () => moeMatmulGrouped(rt, rec, { ...base, ...o });
    expect(call({})).not.toThrow();
    expect(call({ input: 'pair', x: rt.tensor('f32', 16) })).not.toThrow();
    const recorded = rec.dispatchCount;
    expect(call({ input: 'pair' })).toThrow(/x has 8 elements, needs 16/);
    expect(call({ input: 'rows' as 'row' })).toThrow(/input must be 'row' or 'pair'/);
    expect(call({ pairs: 3, order: rt.tensor('u32', 3) })).toThrow(/multiple of topK/);
    expect(call({ pairs: 0 })).toThrow(RangeError);
    expect(call({ topK: 1.5 })).toThrow(RangeError);
    expect(call({ weight: { ...weight, K: 6 } })).toThrow(/K must be a multiple of 4/);
    expect(call({ x: rt.tensor('f32', 7) })).toThrow(/x has 7 elements, needs 8/);
    expect(call({ offsets: rt.tensor('u32', 2) })).toThrow(/offsets has 2 elements, needs 3/);
    expect(call({ order: rt.tensor('u32', 3) })).toThrow(/order has 3 elements, needs 4/);
    expect(call({ out: rt.tensor('f32', 11) })).toThrow(/out has 11 elements, needs 12/);
    expect(call({ offsets: rt.tensor('f32', 3) })).toThrow(/offsets must be u32/);
    expect(call({ order: rt.tensor('i32', 4) })).toThrow(/order must be u32/);
    expect(call({ x: rt.tensor('f16', 8) })).toThrow(TypeError);
    expect(call({ x: sliceTensor(rt.tensor('f32', 12), 1, 8) })).toThrow(/16-byte boundary/);
    const shared = rt.tensor('f32', 64);
    expect(call({ x: sliceTensor(shared, 0, 8), out: sliceTensor(shared, 4, 12) })).toThrow(/overlap/);
    expect(call({ x: sliceTensor(shared, 0, 8), out: sliceTensor(shared, 8, 12) })).toThrow(/out and x share a buffer/);
    expect(rec.dispatchCount).toBe(recorded);
    weight.destroy();
  });
});

// int8 experts, against the float64 reference over the dequantized weights (f32's
// tolerance): experts 1, 3, 16; N 1, 7, 33, 260; K 64, 128, 1024, and K 36 and 200 whose
// last group is partial (a multiple of 4, not of 64); rows 1, 2, 7, 16; topK 1, 2, 8;
// groups of 64 and also of 32 and 8.
const INT8_SHAPES: (Shape & { groupSize?: number })[] = [
  { rows: 1, topK: 1, experts: 1, N: 1, K: 64 },
  { rows: 1, topK: 8, experts: 16, N: 260, K: 1024 },
  { rows: 2, topK: 2, experts: 3, N: 7, K: 128 },
  { rows: 7, topK: 2, experts: 16, N: 33, K: 36 },
  { rows: 16, topK: 8, experts: 16, N: 33, K: 128 },
  { rows: 16, topK: 1, experts: 3, N: 260, K: 64 },
  { rows: 7, topK: 8, experts: 3, N: 7, K: 1024 },
  { rows: 2, topK: 8, experts: 1, N: 260, K: 200 },
  { rows: 16, topK: 2, experts: 16, N: 1, K: 200, groupSize: 32 },
  { rows: 7, topK: 1, experts: 1, N: 33, K: 128, groupSize: 8 },
];

/** Each shape as expand and combine, accumulating and passing quantized data on alternate shapes. */
function int8Cases(shapes: (Shape & { groupSize?: number })[], more: Partial<Case> = {}): Case[] {
  return shapes.flatMap((shape, i) => [
    { ...shape, dtype: 'int8' as const, mode: 'expand' as const, quantized: i % 2 === 1, ...more },
    { ...shape, dtype: 'int8' as const, mode: 'combine' as const, quantized: i % 2 === 0, accumulate: i % 2 === 1, ...more },
  ]);
}

const INT8_SPLIT: [Shape, number][] = [
  // parts of 5, 5, 5, 1 experts; one expert each
  [{ rows: 7, topK: 8, experts: 16, N: 33, K: 128 }, 5],
  [{ rows: 2, topK: 2, experts: 3, N: 260, K: 200 }, 1],
];
const INT8_OUT_OF_RANGE: Shape = { rows: 7, topK: 2, experts: 5, N: 33, K: 64 };

describe('int8 experts: moeMatmul expand and combine', () => {
  itMatchesReference(int8Cases(INT8_SHAPES));
  itMatchesReference(
    INT8_SPLIT.flatMap(([shape, expertsPerPart]) => int8Cases([shape], { expertsPerPart, asyncLoad: expertsPerPart === 1 })),
    3,
  );
  itMatchesReference(int8Cases([INT8_OUT_OF_RANGE], { outOfRange: true, expertsPerPart: 2 }));
});

describe.each(PROFILES)(
  'int8 experts: grouped path (moeGroup + moeMatmulGrouped row / pair + moeWeightedSum), %s kernel profile',
  (profile) => {
    const rt = profileRuntimes[profile];
    itGroupedMatchesReference(rt, int8Cases(INT8_SHAPES));
    itGroupedMatchesReference(
      rt,
      INT8_SPLIT.flatMap(([shape, expertsPerPart]) => int8Cases([shape], { expertsPerPart })),
      3,
    );
    itGroupedMatchesReference(rt, int8Cases([INT8_OUT_OF_RANGE], { outOfRange: true, expertsPerPart: 2, pad: 3 }));
  },
);

describe('int8 experts: upload', () => {
  it('stores each expert as quantizeInt8 does, within half a step of the f32 originals', async () => {
    const rt = runtime();
    const [experts, N, K, groupSize] = [3, 5, 72, 32];
    const G = Math.ceil(K / groupSize);
    const rng = new Rng(11);
    const originals = Array.from({ length: experts }, () => varyingWeights(rng, N * K));
    const expertBytes = N * K + 4 * N * G;
    const weight = prepareMoeExperts(rt, {
      experts,
      N,
      K,
      dtype: 'int8',
      groupSize,
      maxPartBytes: 2 * expertBytes,
      expertData: (e) => originals[e]!,
    });
    try {
      expect([weight.dtype, weight.groupSize, weight.parts.length, weight.bytes]).toEqual(['int8', groupSize, 2, experts * expertBytes]);
      for (const part of weight.parts) {
        // [count][N][K / 4] words of int8 values, then [count][N][G] f32 scales
        const bytes = await rt.readBytes(part.tensor.buffer, 0, part.count * expertBytes);
        for (let local = 0; local < part.count; local++) {
          const e = part.firstExpert + local;
          const q = new Int8Array(bytes, local * N * K, N * K);
          const scales = new Float32Array(bytes, part.count * N * K + local * N * G * 4, N * G);
          const host = quantizeInt8(originals[e]!, N, K, groupSize);
          expect(q, `expert ${e} values`).toEqual(host.q);
          expect(scales, `expert ${e} scales`).toEqual(host.scales);
          // each weight within half a step (s / 2) of its original
          const w = dequantizeInt8Ref(q, scales, N, K, groupSize);
          for (let i = 0; i < N * K; i++) {
            const s = scales[Math.floor(i / K) * G + Math.floor((i % K) / groupSize)]!;
            expect(Math.abs(w[i]! - originals[e]![i]!), `expert ${e} element ${i}`).toBeLessThanOrEqual((s / 2) * (1 + 1e-6));
          }
          expect(relativeError(w, originals[e]!)).toBeLessThan(1e-2);
        }
      }
    } finally {
      weight.destroy();
    }
  });

  it('rejects bad group sizes, quantized data of another shape or group, and weights it cannot quantize', () => {
    const rt = runtime();
    const init = { experts: 2, N: 3, K: 64, dtype: 'int8' as const, expertData: () => new Float32Array(3 * 64) };
    expect(() => prepareMoeExperts(rt, { ...init, dtype: 'f32', groupSize: 64 })).toThrow(/groupSize applies to dtype 'int8'/);
    expect(() => prepareMoeExperts(rt, { ...init, groupSize: 12 })).toThrow(/multiple of 8/);
    expect(() => prepareMoeExperts(rt, { ...init, expertData: () => quantizeInt8(new Float32Array(3 * 64), 3, 64, 32) })).toThrow(
      /groups of 32, the weight's groupSize is 64/,
    );
    expect(() => prepareMoeExperts(rt, { ...init, expertData: () => quantizeInt8(new Float32Array(2 * 64), 2, 64) })).toThrow(
      /128 values and 2 scales, \[3, 64\] needs 192 and 3/,
    );
    expect(() => prepareMoeExperts(rt, { ...init, expertData: () => new Uint16Array(3 * 64) })).toThrow(TypeError);
    expect(() => prepareMoeExperts(rt, { ...init, expertData: () => new Float32Array(10) })).toThrow(/expert 0 has 10 elements/);
    const nan = new Float32Array(3 * 64);
    nan[64 + 5] = NaN;
    let caught: unknown;
    try {
      prepareMoeExperts(rt, { ...init, label: 'layers.0.experts', expertData: (e) => (e === 1 ? nan : new Float32Array(3 * 64)) });
    } catch (e) {
      caught = e;
    }
    expect(isAutoGlmError(caught, 'model_load_failed')).toBe(true);
    expect((caught as Error).message).toMatch(/layers\.0\.experts\[1\]: row 1, column 5/);
    // an expert is 3 * 64 bytes of values and 3 * 4 of scales
    expect(() => prepareMoeExperts(rt, { ...init, maxPartBytes: 3 * 64 + 11 })).toThrow(/204 bytes/);
  });
});
