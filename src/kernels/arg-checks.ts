/**
 * Argument checks for the norm, activation, embedding, RoPE and gather kernels. A wrong
 * shape or dtype is a programming error in the engine: it throws before anything is
 * recorded, instead of surfacing later as a GPU validation error or a silent overrun.
 */
import { DTYPE_BYTES, type GpuTensor } from './tensor.js';

export function assertPositiveInt(op: string, values: Record<string, number>): void {
  for (const [name, v] of Object.entries(values)) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${op}: ${name} must be a positive integer, got ${v}`);
  }
}

export function assertNonNegativeInt(op: string, values: Record<string, number>): void {
  for (const [name, v] of Object.entries(values)) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${op}: ${name} must be a non-negative integer, got ${v}`);
  }
}

/**
 * Whether v is positive, finite and a normal f32: what a shader's f32 param holds unchanged
 * (a subnormal may be flushed to 0, a value past f32's range becomes inf).
 */
export function isPositiveF32(v: number): boolean {
  return v >= 2 ** -126 && v <= 3.4028234663852886e38;
}

export function assertF32(op: string, ...ts: GpuTensor[]): void {
  for (const t of ts) if (t.dtype !== 'f32') throw new TypeError(`${op}: expected an f32 tensor, got ${t.dtype}`);
}

export function assertU32(op: string, name: string, t: GpuTensor): void {
  if (t.dtype !== 'u32') throw new TypeError(`${op}: ${name} must be u32, got ${t.dtype}`);
}

/** The same tensor view (same buffer, same start): what the in-place variants take. */
export function sameView(a: GpuTensor, b: GpuTensor): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset;
}

/**
 * WebGPU rejects a writable binding that overlaps another binding of the same dispatch,
 * so outputs must not overlap inputs (in-place kernels bind the tensor once instead).
 */
export function assertNoOverlap(op: string, names: [string, string], a: GpuTensor, b: GpuTensor): void {
  if (a.buffer !== b.buffer) return;
  const aEnd = a.byteOffset + a.length * DTYPE_BYTES[a.dtype];
  const bEnd = b.byteOffset + b.length * DTYPE_BYTES[b.dtype];
  if (a.byteOffset < bEnd && b.byteOffset < aEnd) {
    throw new RangeError(`${op}: ${names[0]} and ${names[1]} overlap in one buffer; a written tensor may not alias a read one`);
  }
}
