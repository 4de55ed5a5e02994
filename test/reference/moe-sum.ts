/**
 * float64 reference for the MoE routing-weighted sum (src/kernels/moe-sum.ts):
 * out[r, n] = base[r, n] (or 0) + sum over slots s with ids[r * topK + s] < experts of
 * routeWeights[r * topK + s] * y[r * topK + s, n]. Rows of y for out-of-range ids are never read.
 */
export function moeWeightedSumRef(
  y: ArrayLike<number>,
  ids: ArrayLike<number>,
  routeWeights: ArrayLike<number>,
  rows: number,
  topK: number,
  N: number,
  experts: number,
  base?: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < N; n++) {
      let s = base ? base[r * N + n]! : 0;
      for (let slot = 0; slot < topK; slot++) {
        const pair = r * topK + slot;
        if (ids[pair]! < experts) s += routeWeights[pair]! * y[pair * N + n]!;
      }
      out[r * N + n] = s;
    }
  }
  return out;
}
