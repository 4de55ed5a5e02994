/**
 * Tensor slices as kernel bindings: a binding must start at the device's storage offset
 * alignment (256 bytes in Dawn), so a slice is bound from the aligned address at or below
 * its start and the kernel is told its element offset inside the binding.
 */
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

/** A tensor bound from the storage offset alignment at or below its start, and its element offset in that binding. */
export interface BoundTensor {
  binding: { buffer: GPUBuffer; offset: number; size: number };
  offset: number;
}

/**
 * Binds `elements` 4-byte values of t, so that slices (a row chunk) at any `unitBytes`
 * boundary can be passed, as the matmul accepts them (the LoRA and mixture-of-experts
 * kernels run on rows of a step's buffers).
 */
export function bindSlice(rt: KernelRuntime, op: string, name: string, t: GpuTensor, elements: number, unitBytes = 4): BoundTensor {
  if (t.byteOffset % unitBytes !== 0) {
    throw new RangeError(`${op}: ${name} must start at a ${unitBytes}-byte boundary, got byte offset ${t.byteOffset}`);
  }
  const align = rt.ctx.limits.minStorageBufferOffsetAlignment;
  const base = t.byteOffset - (t.byteOffset % align);
  const size = t.byteOffset - base + elements * 4;
  if (size > rt.maxBindingBytes) {
    throw new RangeError(`${op}: ${name} needs a ${size}-byte binding, the adapter allows ${rt.maxBindingBytes}`);
  }
  return { binding: { buffer: t.buffer, offset: base, size }, offset: (t.byteOffset - base) / unitBytes };
}

/**
 * WebGPU tracks a buffer's use in a dispatch as a whole, not by range: a buffer bound
 * writable may not also be bound read-only in the same dispatch, however far apart the two
 * ranges are (Dawn: "includes writable usage and another usage in the same synchronization
 * scope", at submit). Refuse that here, with names, before anything is recorded.
 * `read` are the dispatch's read-only bindings.
 */
export function assertBindingsApart(op: string, written: [string, BoundTensor], read: [string, BoundTensor][]): void {
  const [wName, w] = written;
  for (const [name, b] of read) {
    if (b.binding.buffer === w.binding.buffer) {
      throw new RangeError(
        `${op}: ${wName} and ${name} share a buffer; WebGPU refuses a buffer bound writable and read-only in one dispatch`,
      );
    }
  }
}

/**
 * Two written bindings may share a buffer (writable storage is compatible with itself), but
 * bound from the alignment below their start, two tensors that do not overlap can still
 * have overlapping bindings when they are less than the alignment apart: refuse that.
 */
export function assertWrittenBindingsApart(op: string, a: [string, BoundTensor], b: [string, BoundTensor]): void {
  const [x, y] = [a[1].binding, b[1].binding];
  if (x.buffer === y.buffer && x.offset < y.offset + y.size && y.offset < x.offset + x.size) {
    throw new RangeError(
      `${op}: ${a[0]} and ${b[0]} share a buffer less than the storage offset alignment apart; their bindings would overlap`,
    );
  }
}
