/**
 * Reference for the MoE pair grouping (src/kernels/moe-group.ts): offsets[e] is where expert
 * e's group starts in order, and group e lists the pairs routed to e in ascending order (the
 * kernel may order a group's pairs differently; compare groups sorted).
 */
export function moeGroupRef(ids: ArrayLike<number>, experts: number): { offsets: Uint32Array; order: Uint32Array } {
  const groups: number[][] = Array.from({ length: experts }, () => []);
  for (let p = 0; p < ids.length; p++) {
    const e = ids[p]!;
    if (e < experts) groups[e]!.push(p);
  }
  const offsets = new Uint32Array(experts + 1);
  for (let e = 0; e < experts; e++) offsets[e + 1] = offsets[e]! + groups[e]!.length;
  return { offsets, order: Uint32Array.from(groups.flat()) };
}
