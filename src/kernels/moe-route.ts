/**
 * Mixture-of-experts routing: the top-k experts of each token, best first, and their
 * routing weights, as transformers' routers compute them.
 *
 * softmax (Qwen2/3-MoE, Qwen3MoeSparseMoeBlock): softmax over the router's logits, the top-k
 * experts and their probabilities as weights, optionally renormalised to sum to 1
 * (norm_topk_prob).
 *
 * sigmoid (GLM-4.5 and DeepSeek-V3, Glm4MoeTopkRouter = DeepseekV3TopkRouter): each expert's
 * score is sigmoid(logit); the experts are chosen on score + e_score_correction_bias, within
 * the topk_group best of n_group expert groups, and weighted by their unbiased scores,
 * optionally renormalised.
 *
 * Both then multiply the weights by routed_scaling_factor (`scale`).
 */
import { assertF32, assertNoOverlap, assertPositiveInt, assertU32, isPositiveF32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { BindingKind } from './pipeline-cache.js';
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
/** The picked groups are one u32 bit mask in the shader. */
export const MOE_ROUTE_MAX_GROUPS = 32;

const BINDINGS: readonly BindingKind[] = ['read', 'write', 'write'];
/** The choice bias is a fourth binding, so the default path binds what it always did. */
const BINDINGS_WITH_BIAS: readonly BindingKind[] = ['read', 'write', 'write', 'read'];

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
  /** norm_topk_prob: divide the chosen weights by their sum (sigmoid: their sum + 1e-20). */
  normalize: boolean;
  /** 'softmax' (default; Qwen2/3-MoE): probabilities over all experts. 'sigmoid' (GLM-4.5, DeepSeek-V3): each expert's own score sigmoid(logit). */
  scoring?: 'softmax' | 'sigmoid';
  /** sigmoid only. f32 [experts]: added to the scores for the choice only (e_score_correction_bias); the weights are the unbiased scores. */
  choiceBias?: GpuTensor;
  /**
   * sigmoid only. Group-limited choice (n_group): the experts split into `groups` contiguous
   * equal groups (experts % groups == 0, at least 2 experts per group, groups <= 32); a
   * group's score is the sum of its two best choice scores; only the `topkGroup` best groups
   * (1 <= topkGroup <= groups) keep their choice scores, the others' become 0.0
   * (transformers' masked_fill(~mask, 0.0): not -inf, so a masked expert can still beat a
   * negative biased score). Defaults 1 and 1 (no limit).
   */
  groups?: number;
  /** sigmoid only: topk_group, see `groups`. */
  topkGroup?: number;
  /** Multiplies every routing weight after any normalisation (routed_scaling_factor). Default 1; finite and > 0. */
  scale?: number;
}

/** How a model's router scores and picks its experts: everything but the step's tensors and sizes. */
export type MoeRouting = Pick<MoeRouteOptions, 'normalize' | 'scoring' | 'choiceBias' | 'groups' | 'topkGroup' | 'scale'>;

/**
 * Records the routing of `rows` tokens. Experts with equal logits (sigmoid: equal choice
 * values) are chosen lower index first, and groups with equal scores lower group first, so
 * the choice is reproducible (torch.topk leaves ties unspecified).
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
  const { scoring = 'softmax', choiceBias: bias, groups = 1, topkGroup = 1, scale = 1 } = o;
  if (scoring !== 'softmax' && scoring !== 'sigmoid')
    throw new RangeError(`${op}: scoring must be 'softmax' or 'sigmoid', got ${String(scoring)}`);
  assertPositiveInt(op, { groups, topkGroup });
  if (scoring === 'softmax') {
    if (bias) throw new RangeError(`${op}: choiceBias needs scoring 'sigmoid'`);
    if (groups > 1) throw new RangeError(`${op}: groups > 1 needs scoring 'sigmoid', got groups ${groups}`);
  }
  if (groups > MOE_ROUTE_MAX_GROUPS) throw new RangeError(`${op}: groups must be at most ${MOE_ROUTE_MAX_GROUPS}, got ${groups}`);
  if (o.experts % groups !== 0) throw new RangeError(`${op}: groups ${groups} does not divide experts ${o.experts}`);
  // a group scores its two best experts
  if (groups > 1 && o.experts / groups < 2)
    throw new RangeError(`${op}: groups ${groups} leave fewer than 2 of ${o.experts} experts per group`);
  if (topkGroup > groups) throw new RangeError(`${op}: topkGroup ${topkGroup} exceeds groups ${groups}`);
  // the shader's f32 param holds a positive normal f32 unchanged
  if (!isPositiveF32(scale)) throw new RangeError(`${op}: scale must be a finite positive f32, got ${scale}`);
  if (bias) {
    assertF32(op, bias);
    assertLength(op, 'choiceBias', bias, o.experts);
    assertNoOverlap(op, ['choiceBias', 'ids'], bias, o.ids);
    assertNoOverlap(op, ['choiceBias', 'weights'], bias, o.weights);
  }
  const subgroup = moeRouteUsesSubgroups(rt);
  const lanes = subgroup ? SUBGROUP_LANES : WORKGROUP;
  const kernel = rt.kernel({
    shader: 'moe-route',
    defines: {
      WG: lanes,
      // a power of two, so a model's expert count shares its pipeline with its neighbours'
      PER_LANE: nextPowerOfTwo(Math.ceil(o.experts / lanes)),
      SUBGROUP: subgroup,
      SIGMOID: scoring === 'sigmoid',
      HAS_BIAS: bias !== undefined,
    },
    bindings: bias ? BINDINGS_WITH_BIAS : BINDINGS,
    params: true,
  });
  rec.dispatch(
    kernel,
    bias ? [o.logits, o.ids, o.weights, bias] : [o.logits, o.ids, o.weights],
    params()
      .u32(o.rows)
      .u32(o.experts)
      .u32(o.topK)
      .u32(o.normalize ? 1 : 0)
      .u32(groups)
      .u32(topkGroup)
      .f32(scale),
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
