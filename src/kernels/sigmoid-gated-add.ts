/**
 * Qwen2-MoE's gated shared expert added into the residual stream: each row's gate is
 * sigmoid(x · shared_expert_gate.weight), and the row of the shared expert's output, scaled
 * by it, is added to out in place (see shaders/sigmoid-gated-add.wgsl).
 */
import { assertF32, assertNoOverlap, assertPositiveInt } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import { assertBindingsApart, bindSlice } from './slice-binding.js';
import { hasSubgroupsOf } from './subgroups.js';
import type { GpuTensor } from './tensor.js';

/** Invocations per row of the workgroup-reduced variant (a power of two: the tree reduction). */
const WORKGROUP = 256;
/** Lanes per row of the subgroup variant (CPU adapters): one subgroup, see SUBGROUP in the shader. */
const SUBGROUP_LANES = 8;

export interface SigmoidGatedAddOptions {
  /** f32 [rows, K]: the rows the gate reads (the MLP's normed input). */
  x: GpuTensor;
  /** f32 [K]: the gate's weight row (shared_expert_gate.weight). */
  gate: GpuTensor;
  /** f32 [rows, N]: the values to add (the shared expert's output). */
  y: GpuTensor;
  /**
   * f32 [rows, N]: out[r, n] += sigmoid(dot(x[r, :], gate)) * y[r, n]. Must not overlap x, gate
   * or y, nor share a buffer with them at all (the inputs may share one with each other).
   */
  out: GpuTensor;
  rows: number;
  K: number;
  N: number;
}

/**
 * Records out[r, n] += sigmoid(dot(x[r, :], gate)) * y[r, n] for `rows` rows, one workgroup
 * per row. The sigmoid does not overflow: a dot far below 0 gives a gate of exactly 0, far
 * above 0 exactly 1. Tensors may be views at any 4-byte offset. The inputs may share a
 * buffer; out may not share one with any of them (WebGPU refuses that in one dispatch).
 */
export function sigmoidGatedAdd(rt: KernelRuntime, rec: Recorder, o: SigmoidGatedAddOptions): void {
  const op = 'sigmoidGatedAdd';
  const { rows, K, N } = o;
  assertPositiveInt(op, { rows, K, N });
  assertF32(op, o.x, o.gate, o.y, o.out);
  assertLength(op, 'x', o.x, rows * K);
  assertLength(op, 'gate', o.gate, K);
  assertLength(op, 'y', o.y, rows * N);
  assertLength(op, 'out', o.out, rows * N);
  assertNoOverlap(op, ['x', 'out'], o.x, o.out);
  assertNoOverlap(op, ['gate', 'out'], o.gate, o.out);
  assertNoOverlap(op, ['y', 'out'], o.y, o.out);
  const x = bindSlice(rt, op, 'x', o.x, rows * K);
  const gate = bindSlice(rt, op, 'gate', o.gate, K);
  const y = bindSlice(rt, op, 'y', o.y, rows * N);
  const out = bindSlice(rt, op, 'out', o.out, rows * N);
  assertBindingsApart(
    op,
    ['out', out],
    [
      ['x', x],
      ['gate', gate],
      ['y', y],
    ],
  );
  const subgroup = sigmoidGatedAddUsesSubgroups(rt);
  const kernel = rt.kernel({
    shader: 'sigmoid-gated-add',
    defines: { WG: subgroup ? SUBGROUP_LANES : WORKGROUP, SUBGROUP: subgroup },
    bindings: ['read', 'read', 'read', 'write'],
    params: true,
  });
  const p = params().u32(rows).u32(K).u32(N).u32(x.offset).u32(gate.offset).u32(y.offset).u32(out.offset);
  rec.dispatch(
    kernel,
    [x.binding, gate.binding, y.binding, out.binding],
    p,
    grid1d(rows, 1, rt.ctx.limits.maxComputeWorkgroupsPerDimension),
  );
}

/**
 * Whether sigmoidGatedAdd reduces each row's dot product in one subgroup: on CPU adapters
 * with subgroups of 8+ lanes, where the 256-wide workgroup's barriers are the cost (on
 * lavapipe a coroutine switch per SIMD batch and barrier).
 */
export function sigmoidGatedAddUsesSubgroups(rt: KernelRuntime): boolean {
  return rt.ctx.kernelProfile === 'cpu' && hasSubgroupsOf(rt, SUBGROUP_LANES);
}
