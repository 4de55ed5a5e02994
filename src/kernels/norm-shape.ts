/** How the norm kernels (rmsnorm, layernorm) split a vector across a workgroup. */

/**
 * Invocations per normalised vector: about one per 16 values, a power of two, at most
 * the workgroup. Short vectors then share a workgroup (workgroupSize / tpr of them)
 * instead of leaving most of its invocations idle, and each reduction needs fewer
 * barriers (a per-head norm of 128 values: 8 invocations, 4 barriers). On lavapipe one
 * per 16 ran the per-head norm about 1.5x faster than one per 4, the hidden-size norms
 * alike (noisy measurements on a shared 2-core machine). The shader's tree reduction
 * needs the power of two.
 */
export function normThreadsPerRow(dim: number, workgroupSize: number): number {
  const want = Math.ceil(dim / 16);
  let tpr = 1;
  while (tpr < want && tpr < workgroupSize) tpr *= 2;
  return tpr;
}
