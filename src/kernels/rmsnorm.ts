/**
 * RMSNorm, plain (x / rms * w) or in the Gemma/GLM form (x / rms * (1 + w)), added into its
 * output (a post-norm feeding the residual stream), and the fused residual-add-then-norm
 * that saves one dispatch per norm in a decoder layer.
 */
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';
import { assertF32, assertNoOverlap, assertNonNegativeInt, assertPositiveInt, sameView } from './arg-checks.js';
import { assertLength } from './checks.js';
import { normShape, normShapeDefines } from './norm-shape.js';

const WORKGROUP = 256;

export interface RmsNormOptions {
  /** f32 input. */
  x: GpuTensor;
  /** f32 [dim]. */
  weight: GpuTensor;
  /** f32 output with the same layout as x; omitted (or x itself) to normalise in place. */
  out?: GpuTensor;
  /** out += the norm instead of out = (needs an out apart from x): a post-norm added into the residual stream. */
  accumulate?: boolean;
  rows: number;
  /** Values per normalised vector (the hidden size, or head_dim for per-head q/k norms). */
  dim: number;
  eps: number;
  /** out = x / rms * (1 + w) instead of x / rms * w. */
  onePlus?: boolean;
  /** Vectors per row, each normalised on its own (n_heads for a per-head norm). Default 1. */
  segments?: number;
  /** Elements from one row to the next. Default segments * dim (dense rows). */
  rowStride?: number;
  /** Element offset of row 0 (a q or k slice of a fused QKV row). Default 0. */
  offset?: number;
  /** Reduce in workgroup memory even where a subgroup reduction is the default (tests run both). */
  workgroupReduction?: boolean;
}

/**
 * Records an RMSNorm of `rows * segments` vectors of `dim` values. Vector s of row r
 * starts at element `offset + r * rowStride + s * dim` of x (and of out).
 */
export function rmsNorm(rt: KernelRuntime, rec: Recorder, o: RmsNormOptions): void {
  const op = 'rmsNorm';
  const segments = o.segments ?? 1;
  const rowStride = o.rowStride ?? segments * o.dim;
  const offset = o.offset ?? 0;
  assertPositiveInt(op, { rows: o.rows, dim: o.dim, segments, rowStride });
  assertNonNegativeInt(op, { offset });
  if (rowStride < segments * o.dim) throw new RangeError(`${op}: rowStride ${rowStride} is less than segments * dim = ${segments * o.dim}`);
  const inPlace = o.out === undefined || sameView(o.out, o.x);
  if (o.accumulate && inPlace) throw new RangeError(`${op}: accumulate adds the norm into out, which must be given apart from x`);
  assertF32(op, o.x, o.weight, ...(o.out ? [o.out] : []));
  const extent = offset + (o.rows - 1) * rowStride + segments * o.dim;
  assertLength(op, 'x', o.x, extent);
  if (!inPlace) {
    assertLength(op, 'out', o.out!, extent);
    assertNoOverlap(op, ['x', 'out'], o.x, o.out!);
  }
  assertLength(op, 'weight', o.weight, o.dim);
  const shape = normShape(rt, o.dim, WORKGROUP, o.workgroupReduction);
  const kernel = rt.kernel({
    shader: 'rmsnorm',
    defines: { ...normShapeDefines(shape), IN_PLACE: inPlace, ACCUMULATE: o.accumulate ?? false, ONE_PLUS: o.onePlus ?? false },
    bindings: inPlace ? ['write', 'read'] : ['read', 'read', 'write'],
    params: true,
  });
  const vectors = o.rows * segments;
  rec.dispatch(
    kernel,
    inPlace ? [o.x, o.weight] : [o.x, o.weight, o.out!],
    params().u32(vectors).u32(o.dim).u32(segments).u32(rowStride).u32(offset).f32(o.eps),
    grid1d(vectors, shape.workgroup / shape.tpr),
  );
}

export interface AddRmsNormOptions {
  /** f32 [rows, dim]: the branch output (attention or MLP) to add. */
  x: GpuTensor;
  /** f32 [rows, dim]: the residual stream; updated in place to residual + x. */
  residual: GpuTensor;
  /** f32 [dim]. */
  weight: GpuTensor;
  /** f32 [rows, dim]: rmsnorm(residual + x). Must not alias x or residual. */
  out: GpuTensor;
  rows: number;
  dim: number;
  eps: number;
  onePlus?: boolean;
  /** As in RmsNormOptions. */
  workgroupReduction?: boolean;
}

/** Records residual += x, then out = rmsnorm(residual), in one dispatch. */
export function addRmsNorm(rt: KernelRuntime, rec: Recorder, o: AddRmsNormOptions): void {
  const op = 'addRmsNorm';
  assertPositiveInt(op, { rows: o.rows, dim: o.dim });
  assertF32(op, o.x, o.residual, o.weight, o.out);
  const n = o.rows * o.dim;
  assertLength(op, 'x', o.x, n);
  assertLength(op, 'residual', o.residual, n);
  assertLength(op, 'out', o.out, n);
  assertLength(op, 'weight', o.weight, o.dim);
  assertNoOverlap(op, ['x', 'residual'], o.x, o.residual);
  assertNoOverlap(op, ['x', 'out'], o.x, o.out);
  assertNoOverlap(op, ['residual', 'out'], o.residual, o.out);
  const shape = normShape(rt, o.dim, WORKGROUP, o.workgroupReduction);
  const kernel = rt.kernel({
    shader: 'rmsnorm',
    defines: { ...normShapeDefines(shape), ADD: true, ONE_PLUS: o.onePlus ?? false },
    bindings: ['read', 'write', 'read', 'write'],
    params: true,
  });
  rec.dispatch(
    kernel,
    [o.x, o.residual, o.weight, o.out],
    params().u32(o.rows).u32(o.dim).u32(1).u32(o.dim).u32(0).f32(o.eps),
    grid1d(o.rows, shape.workgroup / shape.tpr),
  );
}
