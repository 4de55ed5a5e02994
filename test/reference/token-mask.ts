/**
 * Reference for the token-mask kernel (src/kernels/token-mask.ts): [rows, vocab] logits with
 * every token a row's mask does not allow at -Infinity (the kernel writes a finite value
 * the sampler counts as masked; rows without a mask are left as they are).
 */
export function tokenMaskRef(logits: ArrayLike<number>, vocab: number, perRow: readonly (Uint32Array | undefined)[]): Float64Array {
  const out = Float64Array.from(logits);
  perRow.forEach((mask, r) => {
    if (!mask) return;
    for (let t = 0; t < vocab; t++) if (!((mask[t >>> 5]! >>> (t & 31)) & 1)) out[r * vocab + t] = -Infinity;
  });
  return out;
}

/** A mask allowing exactly these tokens. */
export function maskOf(vocab: number, allowed: Iterable<number>): Uint32Array {
  const mask = new Uint32Array(Math.ceil(vocab / 32));
  for (const t of allowed) mask[t >>> 5]! |= 1 << (t & 31);
  return mask;
}
