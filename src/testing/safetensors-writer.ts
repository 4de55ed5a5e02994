/**
 * Writes a safetensors file tensor by tensor: the header is computed from the shapes alone,
 * then each tensor's values are produced, converted and written before the next is made,
 * so writing a large model needs host memory for one tensor only.
 */
import { open } from 'node:fs/promises';
import { float32ToBf16Bits, float32ToF16Bits } from '../engine/model/dtype-convert.js';
import { encodeE4m3 } from './fp8-quantize.js';

export type WriteDtype = 'f32' | 'f16' | 'bf16';
/** f8_e4m3: values are rounded to the nearest e4m3fn value (scaling them is the caller's part). */
export type TensorWriteDtype = WriteDtype | 'f8_e4m3';

const HEADER_DTYPE: Record<TensorWriteDtype, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16', f8_e4m3: 'F8_E4M3' };
export const WRITE_DTYPE_BYTES: Record<TensorWriteDtype, number> = { f32: 4, f16: 2, bf16: 2, f8_e4m3: 1 };

export interface TensorToWrite {
  name: string;
  shape: number[];
  /** This tensor's dtype, where it is not the file's (an FP8 checkpoint mixes them). */
  dtype?: TensorWriteDtype;
}

function encode(v: Float32Array, dtype: TensorWriteDtype): Uint8Array {
  const data =
    dtype === 'f32' ? v : dtype === 'f16' ? float32ToF16Bits(v) : dtype === 'bf16' ? float32ToBf16Bits(v) : Uint8Array.from(v, encodeE4m3);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Returns the bytes written. `values` is called once per tensor, in order; `dtype` is the tensors' unless they name their own. */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  dtype: WriteDtype,
  values: (t: TensorToWrite) => Float32Array,
  metadata: Record<string, string> = { format: 'pt' },
): Promise<number> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * WRITE_DTYPE_BYTES[t.dtype ?? dtype];
    header[t.name] = { dtype: HEADER_DTYPE[t.dtype ?? dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // the format pads the header to 8 bytes with spaces
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  const file = await open(path, 'w');
  try {
    await file.write(prefix);
    await file.write(headerBytes);
    for (const t of tensors) {
      const v = values(t);
      const want = t.shape.reduce((a, b) => a * b, 1);
      if (v.length !== want) throw new RangeError(`tensor ${t.name}: ${v.length} values for shape [${t.shape.join(', ')}] (${want})`);
      await file.write(encode(v, t.dtype ?? dtype));
    }
  } finally {
    await file.close();
  }
  return 8 + headerBytes.length + offset;
}
