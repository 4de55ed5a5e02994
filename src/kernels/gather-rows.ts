/** Gathers rows of an f32 matrix by index: the engine runs the LM head only on the rows it samples. */
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { assertF32, assertNoOverlap, assertPositiveInt, assertU32 } from './arg-checks.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

export interface GatherRowsOptions {
  /** f32 [srcRows, dim]. */
  src: GpuTensor;
  /** u32 [count]: rows of src; an index >= srcRows yields a row of zeros. */
  indices: GpuTensor;
  /** f32 [count, dim], not overlapping src. */
  out: GpuTensor;
  srcRows: number;
  count: number;
  dim: number;
}

export function gatherRows(rt: KernelRuntime, rec: Recorder, o: GatherRowsOptions): void {
  const op = 'gatherRows';
  assertPositiveInt(op, { srcRows: o.srcRows, count: o.count, dim: o.dim });
  assertF32(op, o.src, o.out);
  assertU32(op, 'indices', o.indices);
  assertNoOverlap(op, ['src', 'out'], o.src, o.out);
  assertLength(op, 'src', o.src, o.srcRows * o.dim);
  assertLength(op, 'indices', o.indices, o.count);
  assertLength(op, 'out', o.out, o.count * o.dim);
  const n = o.count * o.dim;
  const kernel = rt.kernel({ shader: 'gather-rows', bindings: ['read', 'read', 'write'], params: true });
  rec.dispatch(kernel, [o.src, o.indices, o.out], params().u32(n).u32(o.dim).u32(o.srcRows), grid1d(n, 256));
}
