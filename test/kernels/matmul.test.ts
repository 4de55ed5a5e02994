import { describe, expect, it } from 'vitest';
import { gemvShape, matmul, prepareMatmulWeight, columnsPerPart, type WeightDType } from '../../src/kernels/matmul.js';
import { f32ToF16Bits, type KernelRuntime } from '../../src/kernels/runtime.js';
import { matmulError, type MatmulCase } from '../helpers/matmul-run.js';
import { Rng } from '../helpers/random.js';
import { roundTo, TOLERANCE, useRuntime } from '../helpers/gpu.js';

const runtime = useRuntime();

interface Case extends MatmulCase {
  N: number;
  /** int8 weights have their own test file (matmul-int8.test.ts). */
  dtype: Exclude<WeightDType, 'int8'>;
  bias?: boolean;
  /** Bytes per weight part, to force the split path on small shapes. */
  maxPartBytes?: number;
}

async function runCase(rt: KernelRuntime, c: Case): Promise<{ err: number; parts: number }> {
  const { M, N, K, dtype } = c;
  const rng = new Rng(M * 7919 + N * 104729 + K * 13 + (dtype === 'f16' ? 1 : 0) + (c.bias ? 2 : 0));
  // the rows matmul reads (ldx elements each)
  const ldx = c.gated ? 2 * K : K;
  const x = rng.floats(M * ldx);
  const w = roundTo(dtype, rng.floats(N * K));
  const bias = c.bias ? rng.floats(N) : undefined;
  const weight = prepareMatmulWeight(rt, { data: dtype === 'f16' ? f32ToF16Bits(w) : w, N, K, dtype, bias, maxPartBytes: c.maxPartBytes });
  try {
    return { err: await matmulError(rt, weight, x, w, c, rng, bias), parts: weight.parts.length };
  } finally {
    weight.destroy();
  }
}

function name(c: Case): string {
  const extras = [
    c.gated ? `gated ${c.gated}` : '',
    c.norm ? `norm ${c.norm}` : '',
    c.accumulate ? 'accumulate' : '',
    c.bias ? 'bias' : '',
    c.maxPartBytes ? `split@${c.maxPartBytes}B` : '',
    c.offsetRows ? `offset ${c.offsetRows} rows` : '',
  ]
    .filter(Boolean)
    .join(' ');
  return `${c.dtype} M=${c.M} N=${c.N} K=${c.K}${extras ? ' ' + extras : ''}${c.tuning ? ' ' + JSON.stringify(c.tuning) : ''}`;
}

/** One test per case: the kernel's output within the dtype's tolerance of the float64 reference. */
function itMatchesReference(list: Case[]): void {
  for (const c of list) {
    it(name(c), async ({ skip }) => {
      const rt = runtime();
      if (c.dtype === 'f16' && !rt.hasF16) return skip('the adapter has no shader-f16');
      const { err } = await runCase(rt, c);
      expect(err).toBeLessThanOrEqual(TOLERANCE[c.dtype]);
    });
  }
}

// Every M crosses the GEMV/GEMM boundary (8/9) and the GEMM row tile; N and K cover 1, odd
// sizes, vec4 remainders and a size past 4096. Large N x K pairs are kept to a few so that
// the float64 reference stays quick on two cores.
const cases: Case[] = [];
for (const dtype of ['f32', 'f16'] as const) {
  for (const M of [1, 2, 3, 7, 8, 9, 33, 129]) {
    for (const [N, K] of [
      [1, 1],
      [7, 33],
      [33, 7],
      [129, 129],
    ]) {
      cases.push({ M, N: N!, K: K!, dtype, bias: (M + N!) % 2 === 0 });
    }
  }
  for (const M of [1, 3, 8, 9, 33]) {
    cases.push({ M, N: 4097, K: 33, dtype, bias: true });
    cases.push({ M, N: 33, K: 4097, dtype });
  }
  cases.push({ M: 2, N: 1024, K: 4097, dtype, bias: true });
  // K a multiple of 4: the GEMV reads x as vec4s; N past one 256-column block of W
  for (const M of [1, 3, 8, 9]) cases.push({ M, N: 300, K: 64, dtype, bias: M % 2 === 1 });
  cases.push({ M: 5, N: 4097, K: 36, dtype });
}

describe('matmul', () => {
  itMatchesReference(cases);
});

describe('matmul: weights split across bindings', () => {
  const split: Case[] = [];
  for (const dtype of ['f32', 'f16'] as const) {
    for (const M of [1, 5, 9, 40]) {
      // 33 columns of K=129 per part rounds down to 32: parts of 32, 32, ..., and a remainder
      split.push({ M, N: 101, K: 129, dtype, bias: true, maxPartBytes: 33 * 129 * (dtype === 'f16' ? 2 : 4) });
      // 64-column parts (the multiple-of-64 rounding) with a ragged last part
      split.push({ M, N: 200, K: 17, dtype, maxPartBytes: 70 * 17 * (dtype === 'f16' ? 2 : 4) });
    }
  }
  for (const c of split) {
    it(name(c), async ({ skip }) => {
      const rt = runtime();
      if (c.dtype === 'f16' && !rt.hasF16) return skip('the adapter has no shader-f16');
      const { err, parts } = await runCase(rt, c);
      expect(parts).toBeGreaterThan(1);
      expect(err).toBeLessThanOrEqual(TOLERANCE[c.dtype]);
    });
  }

  it('sizes parts to the binding: whole N when it fits, multiples of 64 (or 4) otherwise', () => {
    expect(columnsPerPart(1000, 10, 4, 1 << 20)).toBe(1000);
    expect(columnsPerPart(151936, 4096, 2, 128 * 2 ** 20)).toBe(16384);
    expect(columnsPerPart(100, 10, 4, 40 * 33)).toBe(32);
    expect(() => columnsPerPart(100, 1000, 4, 1000)).toThrow(/does not fit/);
  });
});

describe('matmul: inputs and outputs at unaligned offsets, other tilings', () => {
  const more: Case[] = [
    { M: 3, N: 70, K: 45, dtype: 'f32', bias: true, offsetRows: 3 },
    { M: 4, N: 300, K: 64, dtype: 'f32', bias: true, offsetRows: 3 },
    { M: 4, N: 300, K: 64, dtype: 'f16', offsetRows: 1 },
    { M: 37, N: 301, K: 64, dtype: 'f16', offsetRows: 2, tuning: { gemmRows: 5, gemmCols4: 3, gemmWorkgroupN: 16, gemmVecWidth: 1 } },
    { M: 40, N: 300, K: 68, dtype: 'f32', bias: true, offsetRows: 1 },
    { M: 20, N: 70, K: 45, dtype: 'f32', offsetRows: 5 },
    { M: 20, N: 70, K: 45, dtype: 'f16', bias: true, offsetRows: 1 },
    { M: 5, N: 300, K: 77, dtype: 'f32', bias: true, tuning: { gemvSplitK: 4, gemvWorkgroupN: 16 } },
    // a GEMV above the default row limit (gemvMaxRows): 16 rows in every lane's registers
    { M: 16, N: 300, K: 77, dtype: 'f32', bias: true, tuning: { gemvMaxRows: 16 } },
    { M: 13, N: 300, K: 77, dtype: 'f16', tuning: { gemvMaxRows: 16, gemvSplitK: 4, gemvWorkgroupN: 16, gemvF16PairsMaxRows: 0 } },
    // the GPU profile's GEMV at its tallest: 64 x 4 lanes, 8 rows of partials (32 KiB, cut to fit the device)
    { M: 8, N: 300, K: 77, dtype: 'f16', tuning: { gemvSplitK: 4, gemvWorkgroupN: 64, gemvMinWorkgroups: 1, gemvF16PairsMaxRows: 0 } },
    { M: 1, N: 300, K: 77, dtype: 'f16', tuning: { gemvSplitK: 8, gemvWorkgroupN: 32 } },
    { M: 50, N: 300, K: 77, dtype: 'f32', bias: true, tuning: { gemmRows: 8, gemmCols4: 1, gemmWorkgroupN: 64 } },
    { M: 50, N: 300, K: 77, dtype: 'f16', tuning: { gemmRows: 2, gemmCols4: 4, gemmWorkgroupN: 8 } },
    { M: 37, N: 301, K: 77, dtype: 'f32', bias: true, tuning: { gemmRows: 5, gemmCols4: 3, gemmWorkgroupN: 16, gemmVecWidth: 1 } },
    { M: 37, N: 301, K: 77, dtype: 'f16', tuning: { gemmRows: 8, gemmCols4: 1, gemmWorkgroupN: 32, gemmVecWidth: 1 } },
    // x shared across k-steps by subgroupShuffle (where the adapter has subgroups; the
    // plain kernel otherwise): K = 77 leaves a tail after the last whole group of steps
    { M: 37, N: 301, K: 77, dtype: 'f32', bias: true, tuning: { gemmRows: 8, gemmCols4: 1, gemmShareX: 8 } },
    { M: 20, N: 70, K: 45, dtype: 'f16', offsetRows: 3, tuning: { gemmRows: 4, gemmCols4: 2, gemmShareX: 4 } },
    { M: 40, N: 33, K: 7, dtype: 'f32', tuning: { gemmRows: 16, gemmCols4: 1, gemmShareX: 8 } },
    { M: 50, N: 301, K: 96, dtype: 'f32', tuning: { gemmRows: 5, gemmCols4: 3, gemmVecWidth: 1, gemmShareX: 2 } },
    // workgroups numbered column block first (the GPU order) and row tile first (the CPU one)
    { M: 37, N: 301, K: 77, dtype: 'f32', bias: true, tuning: { gemmShareX: 0, gemmRowsFirst: false } },
    { M: 40, N: 300, K: 68, dtype: 'f16', offsetRows: 1, tuning: { gemmShareX: 8, gemmRowsFirst: false } },
    { M: 37, N: 301, K: 77, dtype: 'f32', tuning: { gemmShareX: 0, gemmRowsFirst: true } },
    // f16 weights read as 16-byte pairs of vec4 columns (N = 300: 75 vec4 columns, padded to
    // an even count) and, for comparison, as single vec4<f16> columns
    { M: 37, N: 300, K: 77, dtype: 'f16', bias: true, tuning: { gemmF16Pairs: true, gemmCols4: 4, gemmRows: 4 } },
    { M: 37, N: 300, K: 77, dtype: 'f16', tuning: { gemmF16Pairs: false } },
    // GEMVs with x shared across the subgroup (the CPU default from 2 rows, where subgroups allow) and
    // without it: K = 77 leaves a tail after the last eight steps, K = 64 reads x as vec4s
    // on the unshared path, row offsets move x off 16-byte boundaries
    { M: 1, N: 300, K: 77, dtype: 'f32', bias: true, tuning: { gemvShareXMinRows: 1 } },
    { M: 6, N: 300, K: 64, dtype: 'f32', offsetRows: 1, tuning: { gemvShareXMinRows: 1 } },
    { M: 8, N: 301, K: 77, dtype: 'f16', bias: true, offsetRows: 2, tuning: { gemvShareXMinRows: 1 } },
    { M: 3, N: 300, K: 64, dtype: 'f16', tuning: { gemvShareXMinRows: 1, gemvF16PairsMaxRows: 0 } },
    { M: 1, N: 300, K: 77, dtype: 'f32', bias: true, tuning: { gemvShareXMinRows: 0 } },
    { M: 6, N: 300, K: 64, dtype: 'f32', offsetRows: 1, tuning: { gemvShareXMinRows: 0 } },
    { M: 8, N: 301, K: 77, dtype: 'f16', bias: true, offsetRows: 2, tuning: { gemvShareXMinRows: 0 } },
    { M: 3, N: 300, K: 64, dtype: 'f16', tuning: { gemvShareXMinRows: 0, gemvF16PairsMaxRows: 0 } },
    // one-row GEMVs whose vec4 x is loaded by lane 0 alone and broadcast (the CPU default
    // where subgroups allow) and by every lane: f32 and both f16 kernels, a long k loop
    // (K = 4100) and a short one, x after padding rows
    { M: 1, N: 300, K: 4100, dtype: 'f32', bias: true, offsetRows: 4, tuning: { gemvXLane0: true } },
    { M: 1, N: 301, K: 68, dtype: 'f16', offsetRows: 2, tuning: { gemvXLane0: true } },
    { M: 1, N: 300, K: 68, dtype: 'f16', tuning: { gemvXLane0: true, gemvF16PairsMaxRows: 0 } },
    { M: 1, N: 300, K: 4100, dtype: 'f32', bias: true, offsetRows: 4, tuning: { gemvXLane0: false } },
    { M: 1, N: 301, K: 68, dtype: 'f16', offsetRows: 2, tuning: { gemvXLane0: false } },
    // x as fused gate/up rows, the activation applied as it is loaded: GEMV (vec4 x loads,
    // scalar loads, shared x, split K) and GEMM (shared x with a tail, plain, f16 pairs)
    { M: 1, N: 300, K: 64, dtype: 'f32', bias: true, gated: 'silu' },
    { M: 1, N: 300, K: 77, dtype: 'f16', gated: 'gelu_tanh', offsetRows: 1 },
    { M: 5, N: 301, K: 64, dtype: 'f16', gated: 'silu', offsetRows: 2 },
    { M: 5, N: 300, K: 77, dtype: 'f32', gated: 'gelu_tanh', tuning: { gemvShareXMinRows: 0 } },
    { M: 3, N: 300, K: 77, dtype: 'f32', gated: 'silu', tuning: { gemvSplitK: 4, gemvWorkgroupN: 16 } },
    { M: 37, N: 301, K: 77, dtype: 'f16', bias: true, gated: 'silu', offsetRows: 3 },
    { M: 40, N: 300, K: 68, dtype: 'f32', gated: 'gelu_tanh', tuning: { gemmShareX: 0 } },
    { M: 70, N: 300, K: 64, dtype: 'f16', gated: 'silu', tuning: { gemmF16Pairs: false } },
  ];
  itMatchesReference(more);
});

describe('matmul: RMSNorm folded into the input (normX), result added to out (accumulate)', () => {
  // every x path of every kernel: GEMV with vec4 x from lane 0, every lane's vec4, scalar x
  // (K = 77), x shared across the subgroup, split K (the GPU profile); the f16 pairs GEMV;
  // GEMM with shared x and a tail, plain, the GPU profile's tiling and f16 pairs
  const gpuGemm = { gemmRows: 8, gemmCols4: 1, gemmWideCols4: 0, gemmWorkgroupN: 64, gemmShareX: 0, gemmRowsFirst: false };
  const folded: Case[] = [
    { M: 1, N: 300, K: 64, dtype: 'f32', norm: 'plain', tuning: { gemvXLane0: true } },
    { M: 1, N: 300, K: 64, dtype: 'f32', norm: 'onePlus', bias: true, tuning: { gemvXLane0: false } },
    { M: 1, N: 301, K: 77, dtype: 'f32', norm: 'plain', accumulate: true, offsetRows: 2 },
    { M: 3, N: 300, K: 77, dtype: 'f32', norm: 'plain', tuning: { gemvShareXMinRows: 1 } },
    { M: 6, N: 300, K: 64, dtype: 'f32', norm: 'onePlus', accumulate: true, offsetRows: 1, tuning: { gemvShareXMinRows: 0 } },
    { M: 5, N: 300, K: 77, dtype: 'f32', norm: 'plain', bias: true, tuning: { gemvSplitK: 4, gemvWorkgroupN: 16 } },
    { M: 1, N: 300, K: 68, dtype: 'f16', norm: 'plain', accumulate: true },
    { M: 8, N: 301, K: 77, dtype: 'f16', norm: 'onePlus', bias: true, offsetRows: 2 },
    { M: 3, N: 300, K: 64, dtype: 'f16', norm: 'plain', tuning: { gemvF16PairsMaxRows: 0, gemvSplitK: 4, gemvWorkgroupN: 16 } },
    { M: 37, N: 301, K: 77, dtype: 'f32', norm: 'plain', bias: true },
    { M: 40, N: 300, K: 68, dtype: 'f32', norm: 'onePlus', accumulate: true, offsetRows: 1, tuning: { gemmShareX: 0 } },
    { M: 37, N: 301, K: 77, dtype: 'f32', norm: 'plain', accumulate: true, tuning: gpuGemm },
    { M: 70, N: 300, K: 64, dtype: 'f16', norm: 'plain', accumulate: true },
    { M: 37, N: 300, K: 77, dtype: 'f16', norm: 'onePlus', bias: true, offsetRows: 3, tuning: { gemmF16Pairs: false } },
    // x shared over 4 k steps by 8-lane subgroups: lanes 4-7 load what lanes 0-3 do, and
    // the squares summed in the loop must count each element once
    { M: 20, N: 70, K: 45, dtype: 'f32', norm: 'plain', tuning: { gemmRows: 4, gemmCols4: 2, gemmShareX: 4 } },
    // accumulate alone, GEMV and GEMM
    { M: 2, N: 300, K: 64, dtype: 'f32', accumulate: true, bias: true },
    { M: 20, N: 70, K: 45, dtype: 'f16', accumulate: true, offsetRows: 1 },
  ];
  itMatchesReference(folded);

  it('rejects a norm with a gated input, a short or non-f32 norm weight, and a bad eps', () => {
    const rt = runtime();
    const weight = prepareMatmulWeight(rt, { data: new Float32Array(8).fill(1), N: 2, K: 4, dtype: 'f32' });
    const rec = rt.recorder();
    const x = rt.tensor('f32', 8);
    const out = rt.tensor('f32', 4);
    const norm = (w: ReturnType<KernelRuntime['tensor']>, eps = 1e-6) => ({ weight: w, eps, onePlus: false });
    try {
      expect(() => matmul(rt, rec, { x, weight, out, M: 1, gated: 'silu', normX: norm(rt.tensor('f32', 4)) })).toThrow(/normX and gated/);
      expect(() => matmul(rt, rec, { x, weight, out, M: 2, normX: norm(rt.tensor('f32', 3)) })).toThrow(/at least K = 4/);
      expect(() => matmul(rt, rec, { x, weight, out, M: 2, normX: norm(rt.tensor('f16', 4)) })).toThrow(/must be f32/);
      expect(() => matmul(rt, rec, { x, weight, out, M: 2, normX: norm(rt.tensor('f32', 4), NaN) })).toThrow(/eps/);
    } finally {
      weight.destroy();
    }
  });
});

describe('matmul: GEMV workgroup shape', () => {
  const gpu = { gemvWorkgroupN: 64, gemvSplitK: 4, gemvMinWorkgroups: 1 };
  const webgpuDefaults = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256 };
  it('keeps the tuning where the split-K partials fit the device', () => {
    expect(gemvShape(gpu, 1024, 1, webgpuDefaults)).toEqual({ wgn: 64, ks: 4 });
    expect(gemvShape(gpu, 1024, 8, { ...webgpuDefaults, maxComputeWorkgroupStorageSize: 32768 })).toEqual({ wgn: 64, ks: 4 });
  });
  it('narrows the workgroup, then the split, until partials and invocations fit', () => {
    // 8 rows x 64 x 4 lanes x 16 bytes = 32 KiB > 16 KiB
    expect(gemvShape(gpu, 1024, 8, webgpuDefaults)).toEqual({ wgn: 32, ks: 4 });
    expect(gemvShape(gpu, 1024, 1, { ...webgpuDefaults, maxComputeInvocationsPerWorkgroup: 128 })).toEqual({ wgn: 32, ks: 4 });
    expect(gemvShape(gpu, 1024, 8, { ...webgpuDefaults, maxComputeWorkgroupStorageSize: 2048 })).toEqual({ wgn: 8, ks: 2 });
    expect(gemvShape(gpu, 1024, 8, { ...webgpuDefaults, maxComputeWorkgroupStorageSize: 512 })).toEqual({ wgn: 8, ks: 1 });
  });
  it('narrows for small N until there are gemvMinWorkgroups workgroups (CPU adapters)', () => {
    expect(gemvShape({ gemvWorkgroupN: 64, gemvSplitK: 1, gemvMinWorkgroups: 16 }, 64, 1, webgpuDefaults)).toEqual({ wgn: 8, ks: 1 });
    expect(gemvShape({ gemvWorkgroupN: 64, gemvSplitK: 1, gemvMinWorkgroups: 16 }, 4096, 1, webgpuDefaults)).toEqual({ wgn: 64, ks: 1 });
  });
});

describe('matmul: bad arguments', () => {
  it('rejects weights whose data does not match [N, K], and mismatched x/out', () => {
    const rt = runtime();
    expect(() => prepareMatmulWeight(rt, { data: new Float32Array(5), N: 2, K: 3, dtype: 'f32' })).toThrow(RangeError);
    expect(() => prepareMatmulWeight(rt, { data: new Float32Array(6), N: 2, K: 3, dtype: 'f16' })).toThrow(TypeError);
    const weight = prepareMatmulWeight(rt, { data: new Float32Array(6).fill(1), N: 2, K: 3, dtype: 'f32' });
    const rec = rt.recorder();
    expect(() => matmul(rt, rec, { x: rt.tensor('f32', 5), weight, out: rt.tensor('f32', 4), M: 2 })).toThrow(/x has 5/);
    expect(() => matmul(rt, rec, { x: rt.tensor('f32', 6), weight, out: rt.tensor('f32', 3), M: 2 })).toThrow(/out has 3/);
    weight.destroy();
  });

  it('stores f16 weights that cannot be used as f16 as f32, with the same results', async () => {
    const rt = runtime();
    const w = roundTo('f16', new Rng(5).floats(12));
    const weight = prepareMatmulWeight(rt, { data: f32ToF16Bits(w), N: 4, K: 3, dtype: 'f16' });
    expect(weight.dtype).toBe(rt.hasF16 ? 'f16' : 'f32');
    expect(weight.bytes).toBe(12 * (rt.hasF16 ? 2 : 4));
    weight.destroy();
  });
});
