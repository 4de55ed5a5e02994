/** float64 references for the multi-LoRA kernels (loraShrink, loraExpand), written from their definitions. */

export interface LoraShrinkRefOptions {
  rows: number;
  K: number;
  R: number;
  slots: number;
  normX?: { weight: ArrayLike<number>; eps: number; onePlus: boolean };
}

/** t[row, j] = sum_k xn[row, k] * a[slot, j, k]; zeros for a row whose slot is >= slots. */
export function loraShrinkRef(
  x: ArrayLike<number>,
  a: ArrayLike<number>,
  rowSlots: ArrayLike<number>,
  o: LoraShrinkRefOptions,
): Float64Array {
  const { rows, K, R, slots, normX } = o;
  const t = new Float64Array(rows * R);
  const xn = new Float64Array(K);
  for (let row = 0; row < rows; row++) {
    const slot = rowSlots[row]!;
    if (slot >= slots) continue;
    let inv = 1;
    if (normX) {
      let sumSq = 0;
      for (let k = 0; k < K; k++) sumSq += x[row * K + k]! ** 2;
      inv = 1 / Math.sqrt(sumSq / K + normX.eps);
    }
    for (let k = 0; k < K; k++) {
      const w = normX ? (normX.onePlus ? 1 + normX.weight[k]! : normX.weight[k]!) : 1;
      xn[k] = normX ? x[row * K + k]! * inv * w : x[row * K + k]!;
    }
    for (let j = 0; j < R; j++) {
      let sum = 0;
      for (let k = 0; k < K; k++) sum += xn[k]! * a[(slot * R + j) * K + k]!;
      t[row * R + j] = sum;
    }
  }
  return t;
}

export interface LoraExpandRefOptions {
  rows: number;
  N: number;
  rank: number;
  slots: number;
  segmentStarts: readonly number[];
}

/** out + the delta: out[row, n] + sum_j t[row, seg(n) * rank + j] * b[slot, n, j]; rows whose slot is >= slots copied unchanged. */
export function loraExpandRef(
  out: ArrayLike<number>,
  t: ArrayLike<number>,
  b: ArrayLike<number>,
  rowSlots: ArrayLike<number>,
  o: LoraExpandRefOptions,
): Float64Array {
  const { rows, N, rank, slots, segmentStarts } = o;
  const R = (segmentStarts.length + 1) * rank;
  const result = Float64Array.from(out);
  for (let row = 0; row < rows; row++) {
    const slot = rowSlots[row]!;
    if (slot >= slots) continue;
    for (let n = 0; n < N; n++) {
      const seg = segmentStarts.filter((start) => start <= n).length;
      let sum = 0;
      for (let j = 0; j < rank; j++) sum += t[row * R + seg * rank + j]! * b[(slot * N + n) * rank + j]!;
      result[row * N + n] = out[row * N + n]! + sum;
    }
  }
  return result;
}
