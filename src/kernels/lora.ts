/**
 * Multi-LoRA in the punica "BGMV" form: every row of a batch names its own adapter slot (or
 * none), and a layer's LoRA delta is out += (xn @ A[slot]^T) @ B[slot]^T, run after the base
 * matmul as two small kernels: loraShrink (x [rows, K] -> t [rows, R]) and loraExpand
 * (t -> out [rows, N], accumulated). A fused projection (q | k | v, gate | up) keeps one A
 * and one B per part: the parts' A matrices are stacked into R = parts * rank rows, and
 * expand reads each column's part of t.
 */
import { assertLength } from './checks.js';
import { assertF32, assertNoOverlap, assertPositiveInt, assertU32 } from './arg-checks.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import { assertBindingsApart, bindSlice, type BoundTensor } from './slice-binding.js';
import { hasSubgroupsOf } from './subgroups.js';
import type { GpuTensor } from './tensor.js';

/** rowSlots value of a row that uses no adapter. */
export const LORA_NO_ADAPTER = 0xffffffff;

/** Shrink's invocations per workgroup where it reduces in workgroup memory (GPUs). */
const SHRINK_WORKGROUP = 64;
/** Shrink's lanes on CPU adapters: one subgroup, reduced by subgroupAdd (as the norms do, see norm-shape.ts). */
const SHRINK_SUBGROUP_LANES = 8;
const EXPAND_WORKGROUP = 64;

export interface LoraShrinkOptions {
  /** f32 [rows, K]: the layer's input rows. */
  x: GpuTensor;
  /** f32 [slots, R, K]: each adapter slot's A matrices, stacked (R rows per slot). */
  a: GpuTensor;
  /** u32 [rows]: each row's adapter slot; LORA_NO_ADAPTER (or any value >= slots) means none. */
  rowSlots: GpuTensor;
  /** f32 [rows, R]: t[row, j] = sum_k xn[row, k] * a[slot(row), j, k]; rows without an adapter get 0. */
  t: GpuTensor;
  rows: number;
  K: number;
  R: number;
  slots: number;
  /**
   * Optional RMSNorm of x before the product (the engine folds norms into matmuls, so x is then the raw
   * residual stream): xn[row, k] = x[row, k] * rsqrt(mean_k(x[row, :]^2) + eps) * (onePlus ? 1 + w[k] : w[k]).
   * Without it xn = x.
   */
  normX?: { weight: GpuTensor; eps: number; onePlus: boolean };
  /** Reduce in workgroup memory even where a subgroup reduction is the default (tests run both). */
  workgroupReduction?: boolean;
}

export interface LoraExpandOptions {
  /** f32 [rows, R] from loraShrink, R = (segmentStarts.length + 1) * rank. */
  t: GpuTensor;
  /** f32 [slots, N, rank]: each slot's B matrices (the LoRA scale already multiplied in). */
  b: GpuTensor;
  rowSlots: GpuTensor;
  /** f32 [rows, N]: out[row, n] += sum_{j < rank} t[row, seg(n) * rank + j] * b[slot(row), n, j]; rows without an adapter are left exactly as they were. */
  out: GpuTensor;
  rows: number;
  N: number;
  rank: number;
  slots: number;
  /**
   * Where column segments 2 and 3 start (0, 1 or 2 ascending values in (0, N)): a fused projection's
   * parts (q | k | v, or gate | up) each have their own A and B; column n belongs to segment
   * seg(n) = number of starts <= n, and reads that segment's rank columns of t.
   */
  segmentStarts: readonly number[];
}

/** Records t = xn @ A[slot(row)]^T for every row (zeros for rows without an adapter). */
export function loraShrink(rt: KernelRuntime, rec: Recorder, o: LoraShrinkOptions): void {
  const op = 'loraShrink';
  const { rows, K, R, slots, normX } = o;
  assertPositiveInt(op, { rows, K, R, slots });
  assertF32(op, o.x, o.a, o.t, ...(normX ? [normX.weight] : []));
  assertU32(op, 'rowSlots', o.rowSlots);
  assertLength(op, 'x', o.x, rows * K);
  assertLength(op, 'a', o.a, slots * R * K);
  assertLength(op, 'rowSlots', o.rowSlots, rows);
  assertLength(op, 't', o.t, rows * R);
  assertNoOverlap(op, ['x', 't'], o.x, o.t);
  assertNoOverlap(op, ['a', 't'], o.a, o.t);
  assertNoOverlap(op, ['rowSlots', 't'], o.rowSlots, o.t);
  if (normX) {
    assertLength(op, 'normX.weight', normX.weight, K);
    assertNoOverlap(op, ['normX.weight', 't'], normX.weight, o.t);
    if (!(normX.eps >= 0) || !Number.isFinite(normX.eps))
      throw new RangeError(`${op}: normX.eps must be a finite non-negative number, got ${normX.eps}`);
  }
  const x = bindSlice(rt, op, 'x', o.x, rows * K);
  const a = bindSlice(rt, op, 'a', o.a, slots * R * K);
  const s = bindSlice(rt, op, 'rowSlots', o.rowSlots, rows);
  const t = bindSlice(rt, op, 't', o.t, rows * R);
  const w = normX ? bindSlice(rt, op, 'normX.weight', normX.weight, K) : undefined;
  const read: [string, BoundTensor][] = [
    ['x', x],
    ['a', a],
    ['rowSlots', s],
  ];
  assertBindingsApart(op, ['t', t], w ? [...read, ['normX.weight', w]] : read);
  const vec4 = K % 4 === 0 && x.offset % 4 === 0 && a.offset % 4 === 0 && (w === undefined || w.offset % 4 === 0);
  const unit = vec4 ? 4 : 1;
  const subgroup = !o.workgroupReduction && rt.ctx.kernelProfile === 'cpu' && hasSubgroupsOf(rt, SHRINK_SUBGROUP_LANES);
  const kernel = rt.kernel({
    shader: 'lora-shrink',
    defines: {
      WG: subgroup ? SHRINK_SUBGROUP_LANES : SHRINK_WORKGROUP,
      SUBGROUP: subgroup,
      VEC4: vec4,
      V: vec4 ? 'vec4<f32>' : 'f32',
      NORM: normX !== undefined,
      ONE_PLUS: normX?.onePlus ?? false,
    },
    bindings: normX ? ['read', 'read', 'read', 'write', 'read'] : ['read', 'read', 'read', 'write'],
    params: true,
  });
  const tiles = Math.ceil(R / 4);
  const groups = rows * tiles;
  const p = params()
    .u32(R)
    .u32(slots)
    .u32(groups)
    .u32(tiles)
    .u32(K / unit)
    .u32(K)
    .u32(x.offset / unit)
    .u32(a.offset / unit)
    .u32((w?.offset ?? 0) / unit)
    .u32(s.offset)
    .u32(t.offset)
    .f32(normX?.eps ?? 0);
  const bindings = [x.binding, a.binding, s.binding, t.binding];
  if (w) bindings.push(w.binding);
  rec.dispatch(kernel, bindings, p, grid1d(groups, 1));
}

/** Records out += t(segment of each column) @ B[slot(row)]^T for the rows that have an adapter. */
export function loraExpand(rt: KernelRuntime, rec: Recorder, o: LoraExpandOptions): void {
  const op = 'loraExpand';
  const { rows, N, rank, slots, segmentStarts } = o;
  assertPositiveInt(op, { rows, N, rank, slots });
  if (segmentStarts.length > 2) throw new RangeError(`${op}: at most 2 segmentStarts (3 segments), got ${segmentStarts.length}`);
  segmentStarts.forEach((start, i) => {
    const prev = i === 0 ? 0 : segmentStarts[i - 1]!;
    if (!Number.isInteger(start) || start <= prev || start >= N) {
      throw new RangeError(`${op}: segmentStarts must be ascending integers in (0, N = ${N}), got [${segmentStarts.join(', ')}]`);
    }
  });
  assertF32(op, o.t, o.b, o.out);
  assertU32(op, 'rowSlots', o.rowSlots);
  const R = (segmentStarts.length + 1) * rank;
  assertLength(op, 't', o.t, rows * R);
  assertLength(op, 'b', o.b, slots * N * rank);
  assertLength(op, 'rowSlots', o.rowSlots, rows);
  assertLength(op, 'out', o.out, rows * N);
  assertNoOverlap(op, ['t', 'out'], o.t, o.out);
  assertNoOverlap(op, ['b', 'out'], o.b, o.out);
  assertNoOverlap(op, ['rowSlots', 'out'], o.rowSlots, o.out);
  const t = bindSlice(rt, op, 't', o.t, rows * R);
  const b = bindSlice(rt, op, 'b', o.b, slots * N * rank);
  const s = bindSlice(rt, op, 'rowSlots', o.rowSlots, rows);
  const out = bindSlice(rt, op, 'out', o.out, rows * N);
  assertBindingsApart(
    op,
    ['out', out],
    [
      ['t', t],
      ['b', b],
      ['rowSlots', s],
    ],
  );
  const vec4 = rank % 4 === 0 && t.offset % 4 === 0 && b.offset % 4 === 0;
  const cols4 = N % 4 === 0 && out.offset % 4 === 0 && segmentStarts.every((start) => start % 4 === 0);
  const unit = vec4 ? 4 : 1;
  const outUnit = cols4 ? 4 : 1;
  const cols = N / outUnit;
  const groupsX = Math.ceil(cols / EXPAND_WORKGROUP);
  const maxPerDim = rt.ctx.limits.maxComputeWorkgroupsPerDimension;
  if (groupsX > maxPerDim) throw new RangeError(`${op}: N = ${N} needs ${groupsX} workgroups along it, the adapter allows ${maxPerDim}`);
  const kernel = rt.kernel({
    shader: 'lora-expand',
    defines: { WG: EXPAND_WORKGROUP, VEC4: vec4, V: vec4 ? 'vec4<f32>' : 'f32', COLS4: cols4 },
    bindings: ['read', 'read', 'read', 'write'],
    params: true,
  });
  const p = params()
    .u32(rows)
    .u32(cols)
    .u32(N)
    .u32(slots)
    .u32(rank / unit)
    .u32(R / unit)
    // a missing start is N: no column reaches it
    .u32(segmentStarts[0] ?? N)
    .u32(segmentStarts[1] ?? N)
    .u32(t.offset / unit)
    .u32(b.offset / unit)
    .u32(s.offset)
    .u32(out.offset / outUnit);
  // one row per workgroup row; rows past the per-dimension limit spill into z
  const [y, z] = grid1d(rows, 1, maxPerDim);
  rec.dispatch(kernel, [t.binding, b.binding, s.binding, out.binding], p, [groupsX, y, z]);
}
