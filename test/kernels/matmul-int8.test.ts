/**
 * int8 weights: the host quantizer (int8-quant.ts) against its error bound, and the int8
 * GEMV and GEMM (gemv-i8.wgsl, matmul-i8.wgsl) against the float64 matmul over the
 * dequantized weights, so the kernels are checked exactly (f32 rounding only) and the
 * quantization error on its own.
 */
import { describe, expect, it } from 'vitest';
import { dequantizeInt8, INT8_GROUP_SIZE, quantizeInt8, type QuantizedInt8 } from '../../src/kernels/int8-quant.js';
import { prepareMatmulWeight } from '../../src/kernels/matmul.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import { relativeError, useRuntime } from '../helpers/gpu.js';
import { matmulError, type MatmulCase } from '../helpers/matmul-run.js';
import { Rng } from '../helpers/random.js';
import { dequantizeInt8Ref } from '../reference/int8.js';

const runtime = useRuntime();

/** f32 sums of up to 4097 products, against float64: the kernels' only error. */
const TOLERANCE = 1e-5;

/** Weights whose magnitude changes from row to row and group to group, so scales differ. */
function weights(rng: Rng, N: number, K: number): Float32Array {
  const w = rng.floats(N * K);
  for (let i = 0; i < w.length; i += 16) {
    const m = 10 ** rng.uniform(-3, 1);
    for (let j = i; j < Math.min(i + 16, w.length); j++) w[j] = w[j]! * m;
  }
  return w;
}

/** Largest |w - q * s| over s / 2 (the rounding bound), per element; NaN anywhere gives Infinity. */
function worstOfBound(w: Float32Array, qw: QuantizedInt8, N: number, K: number): number {
  const G = Math.ceil(K / qw.groupSize);
  let worst = 0;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const s = qw.scales[n * G + Math.floor(k / qw.groupSize)]!;
      const err = Math.abs(w[n * K + k]! - qw.q[n * K + k]! * s);
      const ratio = s === 0 ? (err === 0 ? 0 : Infinity) : err / (s / 2);
      if (!(ratio <= worst)) worst = Number.isNaN(ratio) ? Infinity : ratio;
    }
  }
  return worst;
}

describe('int8 quantizer', () => {
  it.each([
    [1, 1, 32],
    [7, 33, 32],
    [33, 129, 64],
    [5, 4097, 128],
    [3, 704, 64],
  ])('N=%i K=%i group %i: each weight within half a step of its group, the group max at +-127', (N, K, groupSize) => {
    const rng = new Rng(N * 31 + K);
    const w = weights(rng, N, K);
    const qw = quantizeInt8(w, N, K, groupSize);
    expect(worstOfBound(w, qw, N, K)).toBeLessThanOrEqual(1 + 1e-5);
    const G = Math.ceil(K / groupSize);
    expect(qw.scales.length).toBe(N * G);
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < G; g++) {
        // the last group of a row is shorter when K is not a multiple of the group
        const ks = Array.from({ length: Math.min(groupSize, K - g * groupSize) }, (_, i) => n * K + g * groupSize + i);
        const amax = Math.max(...ks.map((i) => Math.abs(w[i]!)));
        expect(qw.scales[n * G + g]).toBe(Math.fround(amax / 127));
        expect(Math.max(...ks.map((i) => Math.abs(qw.q[i]!)))).toBe(127);
      }
    }
    expect(qw.q.includes(-128)).toBe(false);
    // dequantizeInt8 (what the kernels compute with) agrees with the float64 reference
    expect(relativeError(dequantizeInt8(qw, N, K), dequantizeInt8Ref(qw.q, qw.scales, N, K, groupSize))).toBeLessThan(1e-7);
  });

  it('keeps an outlier to its own group, and stores zeros for a group of zeros', () => {
    const K = 128;
    const w = new Float32Array(K).map((_, k) => (k < 64 ? 0.01 * Math.sin(k) : 0));
    w[3] = 1000;
    const qw = quantizeInt8(w, 1, K, 32);
    // group 0 holds the outlier; group 1's small weights keep their own fine step
    expect(qw.scales[0]).toBeCloseTo(1000 / 127, 4);
    expect(Math.abs(qw.q[40]! * qw.scales[1]! - w[40]!)).toBeLessThanOrEqual(qw.scales[1]! / 2);
    expect([qw.scales[2], qw.scales[3]]).toEqual([0, 0]);
    expect(qw.q.subarray(64).every((v) => v === 0)).toBe(true);
    expect(worstOfBound(w, qw, 1, K)).toBeLessThanOrEqual(1 + 1e-5);
  });

  it('refuses NaN and infinite weights, naming the place, and group sizes the kernels cannot take', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const w = new Float32Array(2 * 40).fill(0.5);
      w[40 + 17] = bad;
      expect(() => quantizeInt8(w, 2, 40, 32, 'layers.0.mlp')).toThrow(/layers\.0\.mlp: row 1, column 17/);
    }
    for (const g of [0, 7, 12, 33.5, 8192]) expect(() => quantizeInt8(new Float32Array(64), 1, 64, g)).toThrow(RangeError);
    // the bound check itself never passes NaN
    const w = new Float32Array([1, 2]);
    expect(worstOfBound(w, { q: new Int8Array(2), scales: new Float32Array([NaN]), groupSize: 8 }, 1, 2)).toBe(Infinity);
  });
});

interface Case extends MatmulCase {
  N: number;
  groupSize?: number;
  bias?: boolean;
  /** Bytes per weight part, to force the split path on small shapes. */
  maxPartBytes?: number;
}

async function runCase(rt: KernelRuntime, c: Case): Promise<{ err: number; parts: number }> {
  const { M, N, K } = c;
  const groupSize = c.groupSize ?? INT8_GROUP_SIZE;
  const rng = new Rng(M * 7919 + N * 104729 + K * 13 + groupSize + (c.bias ? 2 : 0));
  const ldx = c.gated ? 2 * K : K;
  const x = rng.floats(M * ldx);
  const qw = quantizeInt8(weights(rng, N, K), N, K, groupSize);
  const bias = c.bias ? rng.floats(N) : undefined;
  const weight = prepareMatmulWeight(rt, { data: qw, N, K, dtype: 'int8', bias, maxPartBytes: c.maxPartBytes });
  try {
    expect([weight.dtype, weight.groupSize]).toEqual(['int8', groupSize]);
    const w = dequantizeInt8Ref(qw.q, qw.scales, N, K, groupSize);
    return { err: await matmulError(rt, weight, x, w, c, rng, bias), parts: weight.parts.length };
  } finally {
    weight.destroy();
  }
}

function name(c: Case): string {
  const extras = [
    c.groupSize ? `group ${c.groupSize}` : '',
    c.gated ? `gated ${c.gated}` : '',
    c.norm ? `norm ${c.norm}` : '',
    c.accumulate ? 'accumulate' : '',
    c.bias ? 'bias' : '',
    c.maxPartBytes ? `split@${c.maxPartBytes}B` : '',
    c.offsetRows ? `offset ${c.offsetRows} rows` : '',
  ]
    .filter(Boolean)
    .join(' ');
  return `M=${c.M} N=${c.N} K=${c.K}${extras ? ' ' + extras : ''}${c.tuning ? ' ' + JSON.stringify(c.tuning) : ''}`;
}

// GEMV (M <= 8) and GEMM rows; K of 1, odd sizes with a partial last quad (K % 4) and a
// partial last group, K a multiple of 4 (x read as vec4s), K past 4096; N of 1, odd, past
// one 256-column block of W and past 4096. A few shapes per variant: each compiles a pipeline.
const cases: Case[] = [
  { M: 1, N: 1, K: 1 },
  { M: 1, N: 7, K: 33, bias: true },
  { M: 1, N: 129, K: 129, groupSize: 32 },
  { M: 1, N: 4097, K: 64, bias: true },
  { M: 1, N: 33, K: 4097, groupSize: 128 },
  { M: 3, N: 33, K: 7, bias: true },
  { M: 3, N: 300, K: 64 },
  { M: 7, N: 129, K: 129, groupSize: 8 },
  { M: 8, N: 300, K: 704, bias: true },
  { M: 9, N: 7, K: 33 },
  { M: 9, N: 129, K: 129, bias: true, groupSize: 32 },
  { M: 33, N: 33, K: 4097, groupSize: 128 },
  { M: 33, N: 4097, K: 33, bias: true },
  { M: 129, N: 129, K: 129 },
  { M: 129, N: 300, K: 64, bias: true },
];

describe('int8 matmul', () => {
  for (const c of cases) {
    it(name(c), async () => {
      const { err } = await runCase(runtime(), c);
      expect(err).toBeLessThanOrEqual(TOLERANCE);
    });
  }
});

describe('int8 matmul: split weights, offsets, fused gated input, other tilings', () => {
  const more: { c: Case; parts?: boolean }[] = [
    // 8 columns of K = 129 (33 words of k quads and 3 scales each) per part: parts of 8 and a remainder
    { c: { M: 1, N: 101, K: 129, bias: true, maxPartBytes: 9 * 4 * (33 + 3) }, parts: true },
    { c: { M: 40, N: 200, K: 17, maxPartBytes: 70 * 4 * (5 + 1) }, parts: true },
    { c: { M: 3, N: 70, K: 45, bias: true, offsetRows: 3 } },
    { c: { M: 6, N: 300, K: 64, offsetRows: 1 } },
    { c: { M: 40, N: 300, K: 68, bias: true, offsetRows: 1 } },
    // x as fused [gate | up] rows, the activation applied as x is loaded
    { c: { M: 1, N: 300, K: 64, bias: true, gated: 'silu' } },
    { c: { M: 5, N: 301, K: 77, gated: 'gelu_tanh', offsetRows: 2 } },
    { c: { M: 37, N: 301, K: 77, bias: true, gated: 'silu' } },
    // an RMSNorm folded into the input and the result added to out (GEMV: vec4 x, scalar x,
    // shared x, split K; GEMM: shared x, plain, the GPU profile's tiling)
    { c: { M: 1, N: 300, K: 64, norm: 'plain', accumulate: true } },
    { c: { M: 3, N: 300, K: 77, norm: 'onePlus', bias: true, offsetRows: 1 } },
    { c: { M: 5, N: 300, K: 77, norm: 'plain', tuning: { gemvSplitK: 4, gemvWorkgroupN: 16, gemvShareXMinRows: 0 } } },
    { c: { M: 37, N: 301, K: 77, norm: 'plain', accumulate: true, bias: true } },
    { c: { M: 40, N: 300, K: 68, norm: 'onePlus', tuning: { gemmShareX: 0 } } },
    { c: { M: 20, N: 70, K: 45, groupSize: 32, norm: 'plain', tuning: { gemmRows: 4, gemmCols4: 2, gemmShareX: 4 } } },
    {
      c: {
        M: 37,
        N: 301,
        K: 77,
        norm: 'plain',
        accumulate: true,
        tuning: { gemmRows: 8, gemmCols4: 1, gemmWideCols4: 0, gemmWorkgroupN: 64, gemmShareX: 0, gemmRowsFirst: false },
      },
    },
    // no x sharing (adapters without subgroups take this path)
    { c: { M: 1, N: 300, K: 77, bias: true, tuning: { gemvShareXMinRows: 0 } } },
    { c: { M: 40, N: 300, K: 68, tuning: { gemmShareX: 0 } } },
    // sharing over 4 k steps, and a width that is no multiple of 4 (int8 then shares nothing)
    { c: { M: 20, N: 70, K: 45, groupSize: 32, tuning: { gemmRows: 4, gemmCols4: 2, gemmShareX: 4 } } },
    { c: { M: 50, N: 301, K: 96, tuning: { gemmRows: 5, gemmCols4: 3, gemmShareX: 2 } } },
    // the GPU profile's tilings: GEMV with the groups split across 4 (and 2) lanes, GEMM 8 x 1 by 64 lanes
    { c: { M: 5, N: 300, K: 77, bias: true, tuning: { gemvSplitK: 4, gemvWorkgroupN: 16, gemvShareXMinRows: 0 } } },
    {
      c: { M: 8, N: 300, K: 200, groupSize: 32, tuning: { gemvSplitK: 4, gemvWorkgroupN: 64, gemvMinWorkgroups: 1, gemvShareXMinRows: 0 } },
    },
    {
      c: {
        M: 37,
        N: 301,
        K: 77,
        bias: true,
        tuning: { gemmRows: 8, gemmCols4: 1, gemmWideCols4: 0, gemmWorkgroupN: 64, gemmShareX: 0, gemmRowsFirst: false },
      },
    },
  ];
  for (const { c, parts } of more) {
    it(name(c), async () => {
      const r = await runCase(runtime(), c);
      if (parts) expect(r.parts).toBeGreaterThan(1);
      expect(r.err).toBeLessThanOrEqual(TOLERANCE);
    });
  }
});

describe('int8 weights at upload', () => {
  it('quantizes f32 data with the default group and counts the bytes a pass reads', () => {
    const rt = runtime();
    const N = 10;
    const K = 70;
    const w = prepareMatmulWeight(rt, { data: new Rng(3).floats(N * K), N, K, dtype: 'int8', bias: new Float32Array(N) });
    try {
      expect([w.dtype, w.groupSize, w.parts.length]).toEqual(['int8', INT8_GROUP_SIZE, 1]);
      // a byte per weight, 4 per scale (2 groups per row), 4 per bias element
      expect(w.bytes).toBe(N * K + N * 2 * 4 + N * 4);
    } finally {
      w.destroy();
    }
  });

  it('rejects quantized data of the wrong shape', () => {
    const rt = runtime();
    const qw = quantizeInt8(new Float32Array(6 * 40), 6, 40, 32);
    expect(() => prepareMatmulWeight(rt, { data: qw, N: 6, K: 41, dtype: 'int8' })).toThrow(RangeError);
    expect(() => prepareMatmulWeight(rt, { data: { ...qw, scales: qw.scales.subarray(1) }, N: 6, K: 40, dtype: 'int8' })).toThrow(
      RangeError,
    );
    expect(() => prepareMatmulWeight(rt, { data: new Uint16Array(240), N: 6, K: 40, dtype: 'int8' })).toThrow(TypeError);
  });
});
