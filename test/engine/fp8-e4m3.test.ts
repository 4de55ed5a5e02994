/**
 * The e4m3fn decoding the loader uses (dtype-convert.ts) and the encoder the test
 * checkpoints are written with (src/testing/fp8-quantize.ts).
 */
import { describe, expect, it } from 'vitest';
import { countNaNF8E4m3, f8E4m3BitsToNumber } from '../../src/engine/model/dtype-convert.js';
import { E4M3_MAX, encodeE4m3, quantizeBlockFp8 } from '../../src/testing/fp8-quantize.js';

const NAN_BYTES = [0x7f, 0xff];

/** The OCP FP8 E4M3 definition, written out: (-1)^s * 2^(e-7) * (1 + m/8), subnormal 2^-6 * m/8. */
function formula(byte: number): number {
  const s = byte >> 7;
  const e = (byte >> 3) & 0xf;
  const m = byte & 0x7;
  if (e === 15 && m === 7) return NaN;
  const magnitude = e === 0 ? 2 ** -6 * (m / 8) : 2 ** (e - 7) * (1 + m / 8);
  return s ? -magnitude : magnitude;
}

describe('F8_E4M3 decoding', () => {
  it('every one of the 256 bytes decodes as the format defines', () => {
    for (let b = 0; b < 256; b++) {
      const want = formula(b);
      if (Number.isNaN(want)) expect(Number.isNaN(f8E4m3BitsToNumber(b)), `0x${b.toString(16)}`).toBe(true);
      else expect(Object.is(f8E4m3BitsToNumber(b), want), `0x${b.toString(16)}: ${f8E4m3BitsToNumber(b)} vs ${want}`).toBe(true);
    }
  });

  it('landmarks: 448 the largest, 2^-9 the smallest subnormal, 2^-6 the smallest normal, no infinities, -0', () => {
    expect(f8E4m3BitsToNumber(0x7e)).toBe(448);
    expect(f8E4m3BitsToNumber(0xfe)).toBe(-448);
    expect(f8E4m3BitsToNumber(0x01)).toBe(2 ** -9);
    expect(f8E4m3BitsToNumber(0x08)).toBe(2 ** -6);
    expect(f8E4m3BitsToNumber(0x38)).toBe(1);
    expect(f8E4m3BitsToNumber(0x78)).toBe(256); // exponent all ones is an ordinary binade
    expect(Object.is(f8E4m3BitsToNumber(0x80), -0)).toBe(true);
    const values = Array.from({ length: 256 }, (_, b) => f8E4m3BitsToNumber(b));
    expect(values.filter((v) => !Number.isFinite(v) && !Number.isNaN(v))).toEqual([]);
    expect(values.filter(Number.isNaN)).toHaveLength(2);
    expect(Math.max(...values.filter((v) => !Number.isNaN(v)))).toBe(E4M3_MAX);
  });

  it('counts NaN bytes, wherever they are', () => {
    expect(countNaNF8E4m3(Uint8Array.from({ length: 256 }, (_, b) => b))).toBe(2);
    expect(countNaNF8E4m3(new Uint8Array([0x7e, 0xfe, 0x00, 0x80]))).toBe(0);
    expect(countNaNF8E4m3(new Uint8Array([1, 0xff, 2, 0x7f, 0x7f]).subarray(1))).toBe(3);
  });
});

describe('F8_E4M3 encoding (test checkpoints)', () => {
  it('round-trips the value of every byte but the two NaNs, -0 included', () => {
    for (let b = 0; b < 256; b++) {
      if (NAN_BYTES.includes(b)) continue;
      expect(encodeE4m3(f8E4m3BitsToNumber(b)), `0x${b.toString(16)}`).toBe(b);
    }
    for (const b of NAN_BYTES) expect(NAN_BYTES).toContain(encodeE4m3(f8E4m3BitsToNumber(b)));
  });

  it('rounds to the nearest value, ties to the even byte; past the range to NaN', () => {
    const cases: [number, number][] = [
      [1 + 1 / 16, 0x38], // halfway between 1 (0x38) and 1.125 (0x39): even
      [1 + 3 / 16, 0x3a], // halfway between 1.125 and 1.25: even (0x3a)
      [1 + 1 / 16 + 1e-6, 0x39],
      [2 ** -10, 0x00], // half the smallest subnormal: ties to 0
      [3 * 2 ** -10, 0x02], // between subnormals 1 and 2: even
      [-0.3, 0xaa], // 0.3 is nearest 0.3125 = 1.25 * 2^-2
      [450, 0x7e],
      [464, 0x7e], // the midpoint to 480 rounds to even 448
      [-464, 0xfe],
      [465, 0x7f],
      [1e9, 0x7f],
      [-Infinity, 0xff],
      [NaN, 0x7f],
    ];
    for (const [v, b] of cases) expect(encodeE4m3(v), String(v)).toBe(b);
  });

  it('block quantization: scale max|w| / 448 per block, partial blocks included, within half a step of e4m3', () => {
    const [N, K] = [7, 11];
    const w = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 5)));
    const { fp8, scales } = quantizeBlockFp8(w, [N, K], [3, 4]);
    expect(scales).toHaveLength(3 * 3);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const s = scales[Math.floor(n / 3) * 3 + Math.floor(k / 4)]!;
        const q = fp8[n * K + k]!;
        expect(f8E4m3BitsToNumber(encodeE4m3(q)), 'on the e4m3 grid').toBe(q);
        expect(Math.abs(q)).toBeLessThanOrEqual(E4M3_MAX);
        // 3 mantissa bits: relative error at most 2^-4 (normals), absolute 2^-10 * s (subnormals)
        expect(Math.abs(q * s - w[n * K + k]!)).toBeLessThanOrEqual(Math.max(Math.abs(w[n * K + k]!) * 2 ** -4, 2 ** -10 * s) + 1e-7);
      }
    }
    // each block's largest magnitude maps to 448
    const blockMax = (bn: number, bk: number): number => {
      let m = 0;
      for (let n = bn * 3; n < Math.min(N, bn * 3 + 3); n++)
        for (let k = bk * 4; k < Math.min(K, bk * 4 + 4); k++) m = Math.max(m, Math.abs(fp8[n * K + k]!));
      return m;
    };
    for (let bn = 0; bn < 3; bn++) for (let bk = 0; bk < 3; bk++) expect(blockMax(bn, bk)).toBe(E4M3_MAX);
  });
});
