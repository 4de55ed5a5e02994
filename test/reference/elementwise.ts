/** float64 references for elementwise kernels. */
export function addRef(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
  return out;
}

/** Logit soft-capping: cap * tanh(x / cap) per element. */
export function softcapRef(x: ArrayLike<number>, cap: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = cap * Math.tanh(x[i]! / cap);
  return out;
}
