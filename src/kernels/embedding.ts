/**
 * Embedding tables and the gather that reads them.
 *
 * A table can be larger than one storage binding (128 MiB on lavapipe; a 151936 x 4096
 * f16 table is 1.2 GB), so it is held as row-range parts, each within the binding limit,
 * and gathered with one dispatch per part. Tables are f16 or f32; the output is f32.
 */
import { AutoGlmError } from '../errors.js';
import { assertF32, assertNoOverlap, assertPositiveInt, assertU32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import { f16BitsToF32, f32ToF16Bits, type KernelRuntime } from './runtime.js';
import { DTYPE_BYTES, type GpuTensor } from './tensor.js';

export type EmbeddingDType = 'f16' | 'f32';

/** Rows [rowStart, rowStart + rowCount) of a table, as a [rowCount, dim] tensor. */
export interface EmbeddingPart {
  tensor: GpuTensor;
  rowStart: number;
  rowCount: number;
}

export interface EmbeddingTable {
  /** Contiguous, in row order, covering [0, vocab). */
  parts: EmbeddingPart[];
  vocab: number;
  dim: number;
  dtype: EmbeddingDType;
}

export interface PrepareEmbeddingTableOptions {
  /** [vocab, dim] row-major: f32 values, or f16 bit patterns. */
  data: Float32Array | Uint16Array;
  vocab: number;
  dim: number;
  /** Storage dtype on the GPU; data is converted when it differs. */
  dtype: EmbeddingDType;
  /** Largest part in bytes; defaults to (and is capped at) the adapter's binding limit. */
  maxPartBytes?: number;
  label?: string;
}

/** Uploads a host table into parts of at most maxPartBytes each. */
export function prepareEmbeddingTable(rt: KernelRuntime, o: PrepareEmbeddingTableOptions): EmbeddingTable {
  const { vocab, dim, dtype, data } = o;
  if (!Number.isInteger(vocab) || vocab < 1 || !Number.isInteger(dim) || dim < 1) {
    throw new AutoGlmError('model_load_failed', `embedding table: vocab (${vocab}) and dim (${dim}) must be positive integers`);
  }
  if (data.length !== vocab * dim) {
    throw new AutoGlmError(
      'model_load_failed',
      `embedding table: ${data.length} values for a ${vocab} x ${dim} table (${vocab * dim} expected)`,
    );
  }
  const maxPartBytes = Math.min(o.maxPartBytes ?? rt.maxBindingBytes, rt.maxBindingBytes);
  const rowBytes = dim * DTYPE_BYTES[dtype];
  const rowsPerPart = Math.min(vocab, Math.floor(maxPartBytes / rowBytes));
  if (rowsPerPart < 1) {
    throw new AutoGlmError('gpu_out_of_memory', `embedding table: one row of ${rowBytes} bytes exceeds a part of ${maxPartBytes} bytes`);
  }
  const label = o.label ?? 'embedding';
  const parts: EmbeddingPart[] = [];
  for (let rowStart = 0; rowStart < vocab; rowStart += rowsPerPart) {
    const rowCount = Math.min(rowsPerPart, vocab - rowStart);
    // convert one part at a time, so a 1 GB table never exists twice on the host
    const slice = data.subarray(rowStart * dim, (rowStart + rowCount) * dim);
    const tensor = rt.tensor(dtype, rowCount * dim, `${label}[${rowStart}..${rowStart + rowCount})`);
    rt.write(tensor, convert(slice, dtype));
    parts.push({ tensor, rowStart, rowCount });
  }
  return { parts, vocab, dim, dtype };
}

function convert(values: Float32Array | Uint16Array, dtype: EmbeddingDType): Float32Array | Uint16Array {
  if (dtype === 'f32') return values instanceof Float32Array ? values : f16BitsToF32(values);
  return values instanceof Uint16Array ? values : f32ToF16Bits(values);
}

/** Frees the table's GPU buffers. */
export function destroyEmbeddingTable(rt: KernelRuntime, table: EmbeddingTable): void {
  for (const part of table.parts) rt.destroyBuffer(part.tensor.buffer);
}

export interface EmbeddingOptions {
  /** u32 [rows]; an id >= vocab yields a row of zeros. */
  ids: GpuTensor;
  /** f32 [rows, dim]. */
  out: GpuTensor;
  rows: number;
  dim: number;
  parts: readonly EmbeddingPart[];
}

/** Records out[r, :] = table[ids[r], :], one dispatch per part. */
export function embedding(rt: KernelRuntime, rec: Recorder, o: EmbeddingOptions): void {
  const op = 'embedding';
  assertPositiveInt(op, { rows: o.rows, dim: o.dim });
  assertU32(op, 'ids', o.ids);
  assertF32(op, o.out);
  assertLength(op, 'ids', o.ids, o.rows);
  assertLength(op, 'out', o.out, o.rows * o.dim);
  if (o.parts.length === 0) throw new RangeError(`${op}: no table parts`);
  const dtype = o.parts[0]!.tensor.dtype;
  let vocab = 0;
  for (const [i, part] of o.parts.entries()) {
    if (part.tensor.dtype !== dtype || (dtype !== 'f16' && dtype !== 'f32')) {
      throw new TypeError(`${op}: parts must all be f16 or all f32 (part ${i} is ${part.tensor.dtype})`);
    }
    if (part.rowStart !== vocab || !Number.isInteger(part.rowCount) || part.rowCount < 1) {
      throw new RangeError(`${op}: part ${i} covers rows [${part.rowStart}, +${part.rowCount}); parts must be contiguous from row 0`);
    }
    assertLength(op, `part ${i}`, part.tensor, part.rowCount * o.dim);
    assertNoOverlap(op, [`part ${i}`, 'out'], part.tensor, o.out);
    vocab += part.rowCount;
  }
  assertNoOverlap(op, ['ids', 'out'], o.ids, o.out);
  const kernel = rt.kernel({
    shader: 'embedding',
    defines: { F16: dtype === 'f16' },
    bindings: ['read', 'read', 'write'],
    params: true,
  });
  for (const [i, part] of o.parts.entries()) {
    rec.dispatch(
      kernel,
      [o.ids, part.tensor, o.out],
      params()
        .u32(o.rows)
        .u32(o.dim)
        .u32(part.rowStart)
        .u32(part.rowCount)
        .u32(vocab)
        .u32(i === 0 ? 1 : 0),
      grid1d(o.rows, 1),
    );
  }
}
