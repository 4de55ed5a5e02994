/**
 * The last step of a grouped mixture-of-experts down projection: each row's routing-weighted
 * sum of its pairs' outputs (moeMatmulGrouped with input 'pair' writes them), optionally
 * added to a residual stream in place (see shaders/moe-sum.wgsl).
 */
import { assertF32, assertNoOverlap, assertPositiveInt, assertU32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { assertBindingsApart, bindSlice } from './slice-binding.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

const WORKGROUP = 256;

export interface MoeWeightedSumOptions {
  /** f32 [rows * topK, N]: pair r * topK + s's output; rows of out-of-range ids are never read. */
  y: GpuTensor;
  /** u32 [rows * topK]: each pair's expert; a pair with an id >= experts is left out of the sum. */
  ids: GpuTensor;
  /** f32 [rows * topK]. */
  routeWeights: GpuTensor;
  /** f32 [rows, N]; must not overlap the inputs. */
  out: GpuTensor;
  rows: number;
  topK: number;
  N: number;
  experts: number;
  /** Add to what out holds (a residual stream updated in place) instead of overwriting it. */
  accumulate?: boolean;
}

/** out[r, n] (+)= sum over in-range slots s, in slot order, of routeWeights[r * topK + s] * y[r * topK + s, n]. */
export function moeWeightedSum(rt: KernelRuntime, rec: Recorder, o: MoeWeightedSumOptions): void {
  const op = 'moeWeightedSum';
  const { rows, topK, N, experts } = o;
  assertPositiveInt(op, { rows, topK, N, experts });
  assertF32(op, o.y, o.routeWeights, o.out);
  assertU32(op, 'ids', o.ids);
  const pairs = rows * topK;
  assertLength(op, 'y', o.y, pairs * N);
  assertLength(op, 'ids', o.ids, pairs);
  assertLength(op, 'routeWeights', o.routeWeights, pairs);
  assertLength(op, 'out', o.out, rows * N);
  assertNoOverlap(op, ['y', 'out'], o.y, o.out);
  assertNoOverlap(op, ['ids', 'out'], o.ids, o.out);
  assertNoOverlap(op, ['routeWeights', 'out'], o.routeWeights, o.out);
  const y = bindSlice(rt, op, 'y', o.y, pairs * N);
  const ids = bindSlice(rt, op, 'ids', o.ids, pairs);
  const rw = bindSlice(rt, op, 'routeWeights', o.routeWeights, pairs);
  const out = bindSlice(rt, op, 'out', o.out, rows * N);
  assertBindingsApart(
    op,
    ['out', out],
    [
      ['y', y],
      ['ids', ids],
      ['routeWeights', rw],
    ],
  );
  const kernel = rt.kernel({ shader: 'moe-sum', bindings: ['read', 'read', 'read', 'write'], params: true });
  const n = rows * N;
  const p = params()
    .u32(n)
    .u32(N)
    .u32(topK)
    .u32(experts)
    .u32(o.accumulate ? 1 : 0)
    .u32(y.offset)
    .u32(ids.offset)
    .u32(rw.offset)
    .u32(out.offset);
  rec.dispatch(kernel, [y.binding, ids.binding, rw.binding, out.binding], p, grid1d(n, WORKGROUP));
}
