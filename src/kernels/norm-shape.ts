/** How the norm kernels (rmsnorm, layernorm) split a vector across a workgroup. */

/**
 * Invocations per normalised vector: about one per 4 values, a power of two, at most the
 * workgroup. Short vectors then share a workgroup (workgroupSize / tpr of them) instead
 * of leaving most of its invocations idle; the shader's tree reduction needs the power
 * of two.
 */
export function normThreadsPerRow(dim: number, workgroupSize: number): number {
  const want = Math.ceil(dim / 4);
  let tpr = 1;
  while (tpr < want && tpr < workgroupSize) tpr *= 2;
  return tpr;
}
