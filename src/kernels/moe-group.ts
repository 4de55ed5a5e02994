/**
 * Groups a mixture-of-experts layer's (token, slot) pairs by the expert each was routed to,
 * so that moeMatmulGrouped reads an expert's weights once per chunk of its pairs rather
 * than once per pair (see shaders/moe-group.wgsl).
 */
import { assertNoOverlap, assertPositiveInt, assertU32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { assertBindingsApart, assertWrittenBindingsApart, bindSlice } from './slice-binding.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

/** One workgroup does the whole grouping; its invocations share the pairs. */
const WORKGROUP = 256;
/** The histogram holds one u32 per expert in workgroup memory: 4096 fill WebGPU's minimum 16 KiB. */
export const MOE_GROUP_MAX_EXPERTS = 4096;
/** Fewest histogram bins compiled, so that small expert counts share one pipeline. */
const MIN_BINS = 64;

export interface MoeGroupOptions {
  /** u32 [pairs]: each pair's expert; an id >= experts belongs to no group. */
  ids: GpuTensor;
  pairs: number;
  experts: number;
  /** u32 [experts + 1], written: group e is order[offsets[e] .. offsets[e + 1]). */
  offsets: GpuTensor;
  /**
   * u32 [pairs], written: pair indices grouped by expert. Inside a group the order may vary
   * from run to run (atomics place the pairs); entries past offsets[experts] (the pairs of
   * out-of-range ids) are left as they were.
   */
  order: GpuTensor;
}

/** Records the grouping: one dispatch of one workgroup. */
export function moeGroup(rt: KernelRuntime, rec: Recorder, o: MoeGroupOptions): void {
  const op = 'moeGroup';
  assertPositiveInt(op, { pairs: o.pairs, experts: o.experts });
  if (o.experts > MOE_GROUP_MAX_EXPERTS) throw new RangeError(`${op}: experts must be at most ${MOE_GROUP_MAX_EXPERTS}, got ${o.experts}`);
  assertU32(op, 'ids', o.ids);
  assertU32(op, 'offsets', o.offsets);
  assertU32(op, 'order', o.order);
  assertLength(op, 'ids', o.ids, o.pairs);
  assertLength(op, 'offsets', o.offsets, o.experts + 1);
  assertLength(op, 'order', o.order, o.pairs);
  assertNoOverlap(op, ['ids', 'offsets'], o.ids, o.offsets);
  assertNoOverlap(op, ['ids', 'order'], o.ids, o.order);
  assertNoOverlap(op, ['offsets', 'order'], o.offsets, o.order);
  const ids = bindSlice(rt, op, 'ids', o.ids, o.pairs);
  const offsets = bindSlice(rt, op, 'offsets', o.offsets, o.experts + 1);
  const order = bindSlice(rt, op, 'order', o.order, o.pairs);
  assertBindingsApart(op, ['offsets', offsets], [['ids', ids]]);
  assertBindingsApart(op, ['order', order], [['ids', ids]]);
  assertWrittenBindingsApart(op, ['offsets', offsets], ['order', order]);
  const kernel = rt.kernel({
    shader: 'moe-group',
    defines: { WG: WORKGROUP, BINS: Math.max(MIN_BINS, 2 ** Math.ceil(Math.log2(o.experts))) },
    bindings: ['read', 'write', 'write'],
    params: true,
  });
  const p = params().u32(o.pairs).u32(o.experts).u32(ids.offset).u32(offsets.offset).u32(order.offset);
  rec.dispatch(kernel, [ids.binding, offsets.binding, order.binding], p, [1]);
}
