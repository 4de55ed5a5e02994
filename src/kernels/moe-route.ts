/**
 * Mixture-of-experts routing as Qwen3-MoE does it (transformers' Qwen3MoeSparseMoeBlock):
 * softmax over the router's logits, the top-k experts best first, and their probabilities
 * as routing weights, optionally renormalised to sum to 1 (norm_topk_prob).
 */
import { assertF32, assertNoOverlap, assertPositiveInt, assertU32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import { hasSubgroupsOf } from './subgroups.js';
import type { GpuTensor } from './tensor.js';

/** Invocations per row; each keeps experts / WORKGROUP logits in registers. */
const WORKGROUP = 64;
/** Lanes per row of the subgroup variant (CPU adapters): one subgroup, see SUBGROUP in moe-route.wgsl. */
const SUBGROUP_LANES = 8;
/** The shader holds each row's picks in registers. */
export const MOE_ROUTE_MAX_TOP_K = 32;
/** Bounds the per-invocation register array (64 logits at 64 invocations, 512 at 8 lanes). */
export const MOE_ROUTE_MAX_EXPERTS = 4096;

export interface MoeRouteOptions {
  /** f32 [rows, experts]: the router's logits. */
  logits: GpuTensor;
  /** u32 [rows * topK]: the chosen experts of row r at r * topK .. r * topK + topK - 1, best first. */
  ids: GpuTensor;
  /** f32 [rows * topK]: their routing weights, in the same order. */
  weights: GpuTensor;
  rows: number;
  experts: number;
  topK: number;
  /** Qwen3-MoE's norm_topk_prob: divide the chosen probabilities by their sum. */
  normalize: boolean;
}

/**
 * Records the routing of `rows` tokens. Experts with equal logits are chosen lower index
 * first, so the choice is reproducible (torch.topk leaves ties unspecified).
 */
export function moeRoute(rt: KernelRuntime, rec: Recorder, o: MoeRouteOptions): void {
  const op = 'moeRoute';
  assertPositiveInt(op, { rows: o.rows, experts: o.experts, topK: o.topK });
  if (o.experts > MOE_ROUTE_MAX_EXPERTS) throw new RangeError(`${op}: experts must be at most ${MOE_ROUTE_MAX_EXPERTS}, got ${o.experts}`);
  if (o.topK > o.experts) throw new RangeError(`${op}: topK ${o.topK} exceeds experts ${o.experts}`);
  if (o.topK > MOE_ROUTE_MAX_TOP_K) throw new RangeError(`${op}: topK must be at most ${MOE_ROUTE_MAX_TOP_K}, got ${o.topK}`);
  assertF32(op, o.logits, o.weights);
  assertU32(op, 'ids', o.ids);
  assertLength(op, 'logits', o.logits, o.rows * o.experts);
  assertLength(op, 'ids', o.ids, o.rows * o.topK);
  assertLength(op, 'weights', o.weights, o.rows * o.topK);
  assertNoOverlap(op, ['logits', 'ids'], o.logits, o.ids);
  assertNoOverlap(op, ['logits', 'weights'], o.logits, o.weights);
  assertNoOverlap(op, ['ids', 'weights'], o.ids, o.weights);
  const subgroup = moeRouteUsesSubgroups(rt);
  const lanes = subgroup ? SUBGROUP_LANES : WORKGROUP;
  const kernel = rt.kernel({
    shader: 'moe-route',
    // a power of two, so a model's expert count shares its pipeline with its neighbours'
    defines: { WG: lanes, PER_LANE: nextPowerOfTwo(Math.ceil(o.experts / lanes)), SUBGROUP: subgroup },
    bindings: ['read', 'write', 'write'],
    params: true,
  });
  rec.dispatch(
    kernel,
    [o.logits, o.ids, o.weights],
    params()
      .u32(o.rows)
      .u32(o.experts)
      .u32(o.topK)
      .u32(o.normalize ? 1 : 0),
    grid1d(o.rows, 1, rt.ctx.limits.maxComputeWorkgroupsPerDimension),
  );
}

/**
 * Whether moeRoute runs one subgroup per row: on CPU adapters with subgroups of 8+ lanes,
 * where the 64-wide workgroup's barrier per reduction step is the cost (on lavapipe a
 * coroutine switch per SIMD batch). Both variants choose the same experts.
 */
export function moeRouteUsesSubgroups(rt: KernelRuntime): boolean {
  return rt.ctx.kernelProfile === 'cpu' && hasSubgroupsOf(rt, SUBGROUP_LANES);
}

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}
