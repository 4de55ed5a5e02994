/** Argument checks shared by kernel wrappers: a wrong dtype or shape is a programming error, caught before dispatch. */
import type { GpuTensor } from './tensor.js';

export function assertFloat(op: string, ...ts: GpuTensor[]): void {
  for (const t of ts) if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new TypeError(`${op}: expected a float tensor, got ${t.dtype}`);
}

export function assertSameDType(op: string, ...ts: GpuTensor[]): void {
  const d = ts[0]!.dtype;
  for (const t of ts) if (t.dtype !== d) throw new TypeError(`${op}: mixed dtypes ${d} and ${t.dtype}`);
}

export function assertLength(op: string, name: string, t: GpuTensor, atLeast: number): void {
  if (t.length < atLeast) throw new RangeError(`${op}: ${name} has ${t.length} elements, needs ${atLeast}`);
}
