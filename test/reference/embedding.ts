/** float64 references for the row gathers (embedding lookup, gatherRows). */

/** out[j, :] = table[index[j], :], zeros for an index >= tableRows. */
export function gatherRowsRef(table: ArrayLike<number>, tableRows: number, dim: number, indices: ArrayLike<number>): Float64Array {
  const out = new Float64Array(indices.length * dim);
  for (let j = 0; j < indices.length; j++) {
    const r = indices[j]!;
    if (r >= tableRows) continue;
    for (let d = 0; d < dim; d++) out[j * dim + d] = table[r * dim + d]!;
  }
  return out;
}
