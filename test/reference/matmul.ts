/** float64 reference for matmul: out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), w row-major [N, K]. */
export function matmulRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  bias?: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n]! : 0;
      const xr = m * K;
      const wr = n * K;
      for (let k = 0; k < K; k++) s += x[xr + k]! * w[wr + k]!;
      out[m * N + n] = s;
    }
  }
  return out;
}
