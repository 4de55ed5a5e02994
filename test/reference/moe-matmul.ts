/**
 * float64 references for the MoE expert matmul (src/kernels/moe-matmul.ts). W[e] is expert
 * e's [N, K] row-major matrix (for int8 experts, the dequantized values: see
 * reference/int8.ts); an id outside [0, W.length) acts as an expert of zeros, as in the
 * kernel.
 */

/** Row `xRow` of x ([*, K]) times row n of expert e, or 0 for an out-of-range expert. */
function expertDot(x: ArrayLike<number>, W: readonly ArrayLike<number>[], e: number, n: number, xRow: number, K: number): number {
  const w = W[e];
  if (!w) return 0;
  let s = 0;
  for (let k = 0; k < K; k++) s += w[n * K + k]! * x[xRow * K + k]!;
  return s;
}

/** out[r * topK + s, n] = sum_k W[ids[r * topK + s]][n, k] * x[r, k]; x is [rows, K]. */
export function moeExpandRef(
  x: ArrayLike<number>,
  W: readonly ArrayLike<number>[],
  ids: ArrayLike<number>,
  rows: number,
  topK: number,
  N: number,
  K: number,
): Float64Array {
  const out = new Float64Array(rows * topK * N);
  for (let pair = 0; pair < rows * topK; pair++) {
    const row = Math.floor(pair / topK);
    for (let n = 0; n < N; n++) out[pair * N + n] = expertDot(x, W, ids[pair]!, n, row, K);
  }
  return out;
}

/**
 * out[r, n] = base[r, n] (or 0) + sum_s routeWeights[r * topK + s] * sum_k W[ids[r * topK + s]][n, k] * x[r * topK + s, k];
 * x is [rows * topK, K].
 */
export function moeCombineRef(
  x: ArrayLike<number>,
  W: readonly ArrayLike<number>[],
  ids: ArrayLike<number>,
  routeWeights: ArrayLike<number>,
  rows: number,
  topK: number,
  N: number,
  K: number,
  base?: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < N; n++) {
      let s = base ? base[r * N + n]! : 0;
      for (let slot = 0; slot < topK; slot++) {
        const pair = r * topK + slot;
        s += routeWeights[pair]! * expertDot(x, W, ids[pair]!, n, pair, K);
      }
      out[r * N + n] = s;
    }
  }
  return out;
}
