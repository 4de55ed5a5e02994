/** LayerNorm with weight and bias over f32 rows (torch.nn.LayerNorm semantics, biased variance). */
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { assertF32, assertNoOverlap, assertPositiveInt, sameView } from './arg-checks.js';
import { normShape, normShapeDefines } from './norm-shape.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

const WORKGROUP = 256;

export interface LayerNormOptions {
  /** f32 [rows, dim]. */
  x: GpuTensor;
  /** f32 [dim]. */
  weight: GpuTensor;
  /** f32 [dim]. */
  bias: GpuTensor;
  /** f32 [rows, dim]; omitted (or x itself) to normalise in place. */
  out?: GpuTensor;
  rows: number;
  dim: number;
  eps: number;
  /** Reduce in workgroup memory even where a subgroup reduction is the default (tests run both). */
  workgroupReduction?: boolean;
}

export function layerNorm(rt: KernelRuntime, rec: Recorder, o: LayerNormOptions): void {
  const op = 'layerNorm';
  assertPositiveInt(op, { rows: o.rows, dim: o.dim });
  const inPlace = o.out === undefined || sameView(o.out, o.x);
  assertF32(op, o.x, o.weight, o.bias, ...(o.out ? [o.out] : []));
  assertLength(op, 'x', o.x, o.rows * o.dim);
  if (!inPlace) {
    assertLength(op, 'out', o.out!, o.rows * o.dim);
    assertNoOverlap(op, ['x', 'out'], o.x, o.out!);
  }
  assertLength(op, 'weight', o.weight, o.dim);
  assertLength(op, 'bias', o.bias, o.dim);
  const shape = normShape(rt, o.dim, WORKGROUP, o.workgroupReduction);
  const kernel = rt.kernel({
    shader: 'layernorm',
    defines: { ...normShapeDefines(shape), IN_PLACE: inPlace },
    bindings: inPlace ? ['write', 'read', 'read'] : ['read', 'read', 'read', 'write'],
    params: true,
  });
  rec.dispatch(
    kernel,
    inPlace ? [o.x, o.weight, o.bias] : [o.x, o.weight, o.bias, o.out!],
    params().u32(o.rows).u32(o.dim).f32(o.eps),
    grid1d(o.rows, shape.workgroup / shape.tpr),
  );
}
