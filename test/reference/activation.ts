/** float64 references for the activations. */

export function siluRef(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** GELU, tanh approximation (transformers' gelu_pytorch_tanh / gelu_new). */
export function geluTanhRef(v: number): number {
  return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
}

export const ACTIVATIONS_REF = { silu: siluRef, gelu_tanh: geluTanhRef } as const;

/** out[r, c] = act(x[r, c]) * x[r, inner + c], for rows of [gate | up]. */
export function gatedActivationRef(x: ArrayLike<number>, rows: number, inner: number, act: (v: number) => number): Float64Array {
  const out = new Float64Array(rows * inner);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < inner; c++) out[r * inner + c] = act(x[r * 2 * inner + c]!) * x[r * 2 * inner + inner + c]!;
  }
  return out;
}

export function activationRef(x: ArrayLike<number>, act: (v: number) => number): Float64Array {
  return Float64Array.from(x, act);
}
