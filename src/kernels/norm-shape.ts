/** How the norm kernels (rmsnorm, layernorm) split a vector across a workgroup. */
import type { KernelRuntime } from './runtime.js';
import { hasSubgroupsOf } from './subgroups.js';

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

/** Lanes of the subgroup-reduced norm: one subgroup per vector (see SUBGROUP in rmsnorm.wgsl). */
const SUBGROUP_NORM_LANES = 8;

/** How a norm dispatch is shaped: invocations per workgroup, per vector, and the reduction. */
export interface NormShape {
  workgroup: number;
  tpr: number;
  subgroup: boolean;
}

/**
 * On CPU adapters with subgroups of 8+ lanes, one 8-lane workgroup per vector reduced by
 * subgroupAdd (no workgroup memory, no barrier: on lavapipe each barrier is a coroutine
 * switch per SIMD batch); elsewhere, or when `workgroupReduction` asks for it (tests),
 * `workgroupSize` invocations, normThreadsPerRow per vector.
 */
export function normShape(rt: KernelRuntime, dim: number, workgroupSize: number, workgroupReduction = false): NormShape {
  if (!workgroupReduction && rt.ctx.kernelProfile === 'cpu' && hasSubgroupsOf(rt, SUBGROUP_NORM_LANES))
    return { workgroup: SUBGROUP_NORM_LANES, tpr: SUBGROUP_NORM_LANES, subgroup: true };
  return { workgroup: workgroupSize, tpr: normThreadsPerRow(dim, workgroupSize), subgroup: false };
}

/** The WG, TPR and SUBGROUP defines of a norm shader for a shape. */
export function normShapeDefines(shape: NormShape): Record<string, number | boolean> {
  return { WG: shape.workgroup, TPR: shape.tpr, SUBGROUP: shape.subgroup };
}
