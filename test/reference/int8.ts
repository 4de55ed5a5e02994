/**
 * float64 reference for int8 weights: w[n, k] = q[n, k] * scales[n, floor(k / groupSize)],
 * q and scales row-major ([N, K] and [N, ceil(K / groupSize)]). The int8 matmul is checked
 * against matmulRef over these values, so the kernel is tested exactly, apart from the
 * quantization (checked on its own).
 */
export function dequantizeInt8Ref(q: ArrayLike<number>, scales: ArrayLike<number>, N: number, K: number, groupSize: number): Float64Array {
  const G = Math.ceil(K / groupSize);
  const out = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) out[n * K + k] = q[n * K + k]! * scales[n * G + Math.floor(k / groupSize)]!;
  }
  return out;
}
