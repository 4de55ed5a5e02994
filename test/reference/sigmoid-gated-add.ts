/**
 * float64 reference for the sigmoid-gated residual add (src/kernels/sigmoid-gated-add.ts):
 * out[r, n] = base[r, n] + sigmoid(dot(x[r, :], gate)) * y[r, n].
 */
export function sigmoidGatedAddRef(
  x: ArrayLike<number>,
  gate: ArrayLike<number>,
  y: ArrayLike<number>,
  base: ArrayLike<number>,
  rows: number,
  K: number,
  N: number,
): Float64Array {
  const out = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    for (let k = 0; k < K; k++) dot += x[r * K + k]! * gate[k]!;
    const g = sigmoid(dot);
    for (let n = 0; n < N; n++) out[r * N + n] = base[r * N + n]! + g * y[r * N + n]!;
  }
  return out;
}

/** 1 / (1 + e^-z), through e^-|z| so that a large |z| gives 0 or 1 rather than inf / inf. */
export function sigmoid(z: number): number {
  const e = Math.exp(-Math.abs(z));
  return z >= 0 ? 1 / (1 + e) : e / (1 + e);
}
