/** A typed view of a range of a GPU buffer. Kernels take these, not raw buffers. */
export type DType = 'f32' | 'f16' | 'u32' | 'i32';

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, u32: 4, i32: 4 };

export interface GpuTensor {
  readonly buffer: GPUBuffer;
  /** Byte offset into the buffer (a multiple of the storage offset alignment when bound). */
  readonly byteOffset: number;
  /** Number of elements. */
  readonly length: number;
  readonly dtype: DType;
}

export function tensorBytes(t: GpuTensor): number {
  return t.length * DTYPE_BYTES[t.dtype];
}

export function tensorOf(buffer: GPUBuffer, dtype: DType, length?: number, byteOffset = 0): GpuTensor {
  const len = length ?? Math.floor((buffer.size - byteOffset) / DTYPE_BYTES[dtype]);
  return { buffer, byteOffset, length: len, dtype };
}

/** A sub-range of a tensor, in elements. */
export function sliceTensor(t: GpuTensor, start: number, length: number): GpuTensor {
  if (start < 0 || length < 0 || start + length > t.length) {
    throw new RangeError(`slice [${start}, ${start + length}) out of tensor of length ${t.length}`);
  }
  return { buffer: t.buffer, byteOffset: t.byteOffset + start * DTYPE_BYTES[t.dtype], length, dtype: t.dtype };
}
