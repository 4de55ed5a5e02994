/**
 * Block FP8 quantization for test checkpoints, written the way DeepSeek's and Qwen's FP8
 * exports are: per [bn, bk] block a scale max|w| / 448 (e4m3's largest value), and each
 * weight w / scale rounded to the nearest e4m3 value (ties to even). The engine's side,
 * decoding and scaling back, is src/engine/model/block-fp8.ts; this is its inverse, for
 * generating what it reads.
 */
import { f8E4m3Table } from '../engine/model/dtype-convert.js';

/** e4m3fn's largest finite value. */
export const E4M3_MAX = 448;

/** The non-negative finite e4m3 values in increasing order: bytes 0x00..0x7e. */
const LAST_FINITE = 0x7e;

/**
 * value -> e4m3fn byte, round to nearest even. NaN and magnitudes past the rounding range of
 * 448 (above 464, the midpoint to the 480 the format lacks) become NaN (0x7f / 0xff): e4m3fn
 * has no infinity. -0 keeps its sign.
 */
export function encodeE4m3(value: number): number {
  if (Number.isNaN(value)) return 0x7f;
  const sign = value < 0 || Object.is(value, -0) ? 0x80 : 0;
  const a = Math.abs(value);
  const table = f8E4m3Table();
  // the largest byte whose value is <= a: the bytes' values increase with the bytes
  let lo = 0;
  let hi = LAST_FINITE;
  if (a >= table[LAST_FINITE]!) lo = LAST_FINITE;
  else {
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (table[mid]! <= a) lo = mid;
      else hi = mid;
    }
  }
  const below = table[lo]!;
  if (a === below) return sign | lo;
  // past 448 the next step would be 480 (the NaN pattern): up to the midpoint rounds down to even 0x7e
  const above = lo === LAST_FINITE ? 480 : table[lo + 1]!;
  const up = a - below > above - a || (a - below === above - a && (lo & 1) === 1);
  if (!up) return sign | lo;
  return lo === LAST_FINITE ? sign | 0x7f : sign | (lo + 1);
}

export interface BlockFp8Weight {
  /** The e4m3 values (each exactly representable), row-major [N, K]. */
  fp8: Float32Array;
  /** One scale per block, [ceil(N / bn), ceil(K / bk)]. */
  scales: Float32Array;
}

/** [N, K] f32 values -> e4m3 values and block scales, so that w ~ fp8 * scale. */
export function quantizeBlockFp8(values: Float32Array, shape: [number, number], blockSize: [number, number]): BlockFp8Weight {
  const [N, K] = shape;
  const [bn, bk] = blockSize;
  const rowBlocks = Math.ceil(N / bn);
  const colBlocks = Math.ceil(K / bk);
  const scales = new Float32Array(rowBlocks * colBlocks);
  const fp8 = new Float32Array(N * K);
  const table = f8E4m3Table();
  for (let rb = 0; rb < rowBlocks; rb++) {
    for (let cb = 0; cb < colBlocks; cb++) {
      const rows = [rb * bn, Math.min(N, (rb + 1) * bn)] as const;
      const cols = [cb * bk, Math.min(K, (cb + 1) * bk)] as const;
      let max = 0;
      for (let n = rows[0]; n < rows[1]; n++) for (let k = cols[0]; k < cols[1]; k++) max = Math.max(max, Math.abs(values[n * K + k]!));
      // an all-zero block: any scale gives zeros
      const scale = Math.fround(max > 0 ? max / E4M3_MAX : 1);
      scales[rb * colBlocks + cb] = scale;
      for (let n = rows[0]; n < rows[1]; n++)
        for (let k = cols[0]; k < cols[1]; k++) fp8[n * K + k] = table[encodeE4m3(values[n * K + k]! / scale)]!;
    }
  }
  return { fp8, scales };
}
