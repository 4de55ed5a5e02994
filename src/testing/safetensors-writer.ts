/**
 * Writes a safetensors file tensor by tensor: the header is computed from the shapes alone,
 * then each tensor's values are produced, converted and written before the next is made,
 * so writing a large model needs host memory for one tensor only.
 */
import { open } from 'node:fs/promises';
import { float32ToBf16Bits, float32ToF16Bits } from '../engine/model/dtype-convert.js';

export type WriteDtype = 'f32' | 'f16' | 'bf16';

const HEADER_DTYPE: Record<WriteDtype, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
const BYTES: Record<WriteDtype, number> = { f32: 4, f16: 2, bf16: 2 };

export interface TensorToWrite {
  name: string;
  shape: number[];
}

/** Returns the bytes written. `values` is called once per tensor, in order. */
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
    const bytes = t.shape.reduce((a, b) => a * b, 1) * BYTES[dtype];
    header[t.name] = { dtype: HEADER_DTYPE[dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
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
      const data = dtype === 'f32' ? v : dtype === 'f16' ? float32ToF16Bits(v) : float32ToBf16Bits(v);
      await file.write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  } finally {
    await file.close();
  }
  return 8 + headerBytes.length + offset;
}
