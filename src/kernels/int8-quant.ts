/**
 * Symmetric int8 quantization of matmul weights, on the host, at load.
 *
 * W is [N, K] (output features x input features). Each output row is cut into groups of
 * `groupSize` consecutive k (the last group of a row is shorter when K is not a multiple of
 * it), and each group gets one f32 scale s = max |w| / 127 and values q = round(w / s) in
 * [-127, 127] (ties to even); the kernels read w as q * s. -128 is never used, so the range is symmetric
 * and a group's largest |w| maps to exactly 127. A group of zeros gets scale 0.
 *
 * Per-element error is at most s / 2 (rounding), i.e. max |w| / 254 of its group: the
 * group, not the whole row, sets the step, so one large weight spoils only its own group.
 */
import { AutoGlmError } from '../errors.js';

/**
 * Default k per scale. models/demo-stories against its f16 weights, logits at the 983
 * positions of its three greedy f16 stories: groups of 32 agreed on 982 top-1 tokens (max
 * logit difference 0.113, relative L2 3.9e-3), 64 on 982 (0.108, 4.4e-3), 128 on 981
 * (0.121, 4.6e-3), and 128 alone let a greedy story leave f16's at token 146 (32 and 64 at
 * 262). On lavapipe the 4096 x 4096 GEMV took 0.69x (32), 0.61x (64) and 0.53x (128) of
 * f16's CPU time. 64: 4 bytes of scale per 64 weights (+6%).
 */
export const INT8_GROUP_SIZE = 64;

/** Quantized [N, K]: row-major int8 values and [N, ceil(K / groupSize)] row-major f32 scales. */
export interface QuantizedInt8 {
  readonly q: Int8Array;
  readonly scales: Float32Array;
  readonly groupSize: number;
}

export function int8Groups(K: number, groupSize: number): number {
  return Math.ceil(K / groupSize);
}

/**
 * Group sizes the kernels take: a multiple of 8 (the GEMV and GEMM share x over eight k
 * steps and read four k per word, and a group must hold whole steps of both).
 */
export function checkGroupSize(groupSize: number): void {
  if (!Number.isInteger(groupSize) || groupSize < 8 || groupSize % 8 !== 0 || groupSize > 4096) {
    throw new RangeError(`int8 group size must be a multiple of 8 in [8, 4096], got ${groupSize}`);
  }
}

/**
 * Quantizes `rows` rows of src ([rows, K] row-major) into q and scales at row `rowOffset`
 * (so that a large tensor can be read and quantized a few rows at a time, and tensors
 * stacked along N quantized in place). A NaN or infinite weight throws: it would turn
 * its whole group into NaN (or zeros) without a word.
 */
export function quantizeInt8Into(
  src: Float32Array,
  rows: number,
  K: number,
  out: QuantizedInt8,
  rowOffset: number,
  label = 'weight',
): void {
  const { q, scales, groupSize } = out;
  const G = int8Groups(K, groupSize);
  if (src.length < rows * K) throw new RangeError(`quantizeInt8: src has ${src.length} values, [${rows}, ${K}] needs ${rows * K}`);
  if ((rowOffset + rows) * K > q.length || (rowOffset + rows) * G > scales.length) {
    throw new RangeError(`quantizeInt8: rows [${rowOffset}, ${rowOffset + rows}) do not fit the output`);
  }
  for (let r = 0; r < rows; r++) {
    const srcRow = r * K;
    const dstRow = (rowOffset + r) * K;
    for (let g = 0; g < G; g++) {
      const k0 = g * groupSize;
      const k1 = Math.min(k0 + groupSize, K);
      // Math.max propagates NaN, so one test after the loop catches NaN and infinities
      let amax = 0;
      for (let k = k0; k < k1; k++) amax = Math.max(amax, Math.abs(src[srcRow + k]!));
      if (!(amax <= F32_MAX)) {
        let k = k0;
        while (Math.abs(src[srcRow + k]!) <= F32_MAX) k++;
        throw new AutoGlmError(
          'model_load_failed',
          `${label}: row ${rowOffset + r}, column ${k} is ${src[srcRow + k]}; int8 quantization needs finite weights`,
        );
      }
      const scale = Math.fround(amax / 127);
      scales[(rowOffset + r) * G + g] = scale;
      if (scale === 0) {
        // all zeros (or values so small that the scale underflows f32): store zeros
        q.fill(0, dstRow + k0, dstRow + k1);
        continue;
      }
      const inv = 1 / scale;
      for (let k = k0; k < k1; k++) {
        // round half to even (symmetric: -w gets -q) by the 1.5 * 2^52 trick, 2.3x faster
        // than Math.round here; clamped, as amax / fround(amax / 127) may pass 127.5 for
        // subnormal scales
        const v = src[srcRow + k]! * inv + ROUND_MAGIC - ROUND_MAGIC;
        q[dstRow + k] = v > 127 ? 127 : v < -127 ? -127 : v;
      }
    }
  }
}

const F32_MAX = 3.4028234663852886e38;
/** Adding and subtracting 1.5 * 2^52 rounds a double of magnitude below 2^51 to an integer, ties to even. */
const ROUND_MAGIC = 6755399441055744;

/** Quantizes a whole [N, K] matrix. */
export function quantizeInt8(src: Float32Array, N: number, K: number, groupSize = INT8_GROUP_SIZE, label?: string): QuantizedInt8 {
  checkGroupSize(groupSize);
  const out = allocateQuantized(N, K, groupSize);
  quantizeInt8Into(src, N, K, out, 0, label);
  return out;
}

export function allocateQuantized(N: number, K: number, groupSize: number): QuantizedInt8 {
  checkGroupSize(groupSize);
  return { q: new Int8Array(N * K), scales: new Float32Array(N * int8Groups(K, groupSize)), groupSize };
}

/** The weights the kernels compute with: q * scale, as f32 [N, K]. */
export function dequantizeInt8(w: QuantizedInt8, N: number, K: number): Float32Array {
  const G = int8Groups(K, w.groupSize);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) out[n * K + k] = w.q[n * K + k]! * w.scales[n * G + Math.floor(k / w.groupSize)]!;
  }
  return out;
}
