/**
 * GGUF v3 (llama.cpp's model format), written and read back by our own code.
 * Layout (ggml/docs/gguf.md): magic "GGUF", u32 version 3, u64 tensor count, u64 metadata
 * count; metadata key/value pairs (u64-length strings, u32 value type, value; arrays as
 * u32 element type + u64 count + elements); tensor infos (name, u32 n_dims, u64 dims
 * innermost first, u32 ggml type, u64 offset into the data section); padding to
 * `general.alignment` (default 32); the data section, each tensor aligned the same way.
 * All little-endian.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { AutoGlmError } from '../errors.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** The ggml tensor types we write (unquantised only). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
}

export const GGML_TYPE_BYTES: Record<GgmlType, number> = { [GgmlType.F32]: 4, [GgmlType.F16]: 2 };

export type GgufScalar = { type: Exclude<GgufValueType, GgufValueType.ARRAY | GgufValueType.STRING>; value: number | bigint | boolean };
export type GgufValue =
  | GgufScalar
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.ARRAY; itemType: Exclude<GgufValueType, GgufValueType.ARRAY>; value: (number | bigint | boolean | string)[] };

/** Shorthands for metadata values. */
export const gguf = {
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  strings: (value: string[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value }),
  i32s: (value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value }),
  f32s: (value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, value }),
};

export interface GgufTensorSource {
  name: string;
  /** Row-major shape, outermost first (PyTorch/safetensors order); written reversed as GGUF dims. */
  shape: number[];
  type: GgmlType;
  /** Produces the tensor's bytes (little-endian, `type` elements); called once, in order, while writing. */
  data: () => Promise<Uint8Array>;
}

/** Little-endian byte sink that grows as needed. */
class ByteWriter {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number) {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number) {
    this.reserve(1);
    this.view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number) {
    this.reserve(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number) {
    this.reserve(2);
    this.view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number) {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number) {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number) {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number) {
    this.reserve(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: number | bigint) {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: number | bigint) {
    this.reserve(8);
    this.view.setBigInt64(this.length, BigInt(v), true);
    this.length += 8;
  }
  string(s: string) {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
  pad(alignment: number) {
    while (this.length % alignment !== 0) this.u8(0);
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(w: ByteWriter, type: GgufValueType, v: number | bigint | boolean | string): void {
  switch (type) {
    case GgufValueType.UINT8:
      return w.u8(Number(v));
    case GgufValueType.INT8:
      return w.i8(Number(v));
    case GgufValueType.UINT16:
      return w.u16(Number(v));
    case GgufValueType.INT16:
      return w.i16(Number(v));
    case GgufValueType.UINT32:
      return w.u32(Number(v));
    case GgufValueType.INT32:
      return w.i32(Number(v));
    case GgufValueType.FLOAT32:
      return w.f32(Number(v));
    case GgufValueType.BOOL:
      return w.u8(v ? 1 : 0);
    case GgufValueType.STRING:
      return w.string(String(v));
    case GgufValueType.UINT64:
      return w.u64(typeof v === 'bigint' ? v : BigInt(Number(v)));
    case GgufValueType.INT64:
      return w.i64(typeof v === 'bigint' ? v : BigInt(Number(v)));
    case GgufValueType.FLOAT64:
      return w.f64(Number(v));
    case GgufValueType.ARRAY:
      throw new AutoGlmError('internal_error', 'GGUF: nested arrays are not written');
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/**
 * Writes a GGUF v3 file. Tensor bytes are pulled one tensor at a time, so peak memory is
 * about the largest tensor. Returns the file's size in bytes.
 */
export async function writeGguf(
  path: string,
  options: { metadata: Record<string, GgufValue>; tensors: GgufTensorSource[] },
): Promise<number> {
  const alignmentValue = options.metadata['general.alignment'];
  const alignment = alignmentValue && alignmentValue.type === GgufValueType.UINT32 ? Number(alignmentValue.value) : GGUF_DEFAULT_ALIGNMENT;
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(options.tensors.length);
  w.u64(Object.keys(options.metadata).length);
  for (const [key, value] of Object.entries(options.metadata)) {
    w.string(key);
    w.u32(value.type);
    if (value.type === GgufValueType.ARRAY) {
      w.u32(value.itemType);
      w.u64(value.value.length);
      for (const item of value.value) writeScalar(w, value.itemType, item);
    } else {
      writeScalar(w, value.type, value.value);
    }
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of options.tensors) {
    const elements = t.shape.reduce((a, b) => a * b, 1);
    const size = elements * GGML_TYPE_BYTES[t.type];
    w.string(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    sizes.push(size);
    offset = alignUp(offset + size, alignment);
  }
  w.pad(alignment);
  const handle = await open(path, 'w');
  try {
    let pos = 0;
    const put = async (bytes: Uint8Array) => {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, pos + done);
        done += bytesWritten;
      }
      pos += bytes.length;
    };
    await put(w.bytes());
    for (let i = 0; i < options.tensors.length; i++) {
      const t = options.tensors[i]!;
      const data = await t.data();
      if (data.length !== sizes[i]) {
        throw new AutoGlmError('internal_error', `GGUF: tensor ${t.name} gave ${data.length} bytes, expected ${sizes[i]}`);
      }
      await put(data);
      const padded = alignUp(pos, alignment);
      if (padded > pos) await put(new Uint8Array(padded - pos));
    }
    return pos;
  } finally {
    await handle.close();
  }
}

export interface GgufTensorInfo {
  name: string;
  /** GGUF order: innermost first. */
  dims: number[];
  type: number;
  /** Relative to dataOffset. */
  offset: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute file offset of the data section. */
  dataOffset: number;
  fileBytes: number;
}

/** Parses a GGUF file's header (metadata and tensor infos), validating offsets against the file size. */
export async function readGguf(path: string): Promise<GgufFile> {
  const handle = await open(path, 'r');
  try {
    const fileBytes = (await handle.stat()).size;
    const r = new FileReader(handle, fileBytes, path);
    if ((await r.u32()) !== GGUF_MAGIC) throw r.bad('not a GGUF file (bad magic)');
    const version = await r.u32();
    if (version !== 2 && version !== 3) throw r.bad(`unsupported GGUF version ${version}`);
    const tensorCount = Number(await r.u64());
    const kvCount = Number(await r.u64());
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = await r.string();
      const type = (await r.u32()) as GgufValueType;
      if (type === GgufValueType.ARRAY) {
        const itemType = (await r.u32()) as Exclude<GgufValueType, GgufValueType.ARRAY>;
        const n = Number(await r.u64());
        const items: (number | bigint | boolean | string)[] = [];
        for (let j = 0; j < n; j++) items.push(await r.scalar(itemType));
        metadata.set(key, { type, itemType, value: items });
      } else {
        metadata.set(key, { type, value: await r.scalar(type) } as GgufValue);
      }
    }
    const tensors: GgufTensorInfo[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = await r.string();
      const nDims = await r.u32();
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(Number(await r.u64()));
      const type = await r.u32();
      const offset = Number(await r.u64());
      tensors.push({ name, dims, type, offset });
    }
    const alignmentValue = metadata.get('general.alignment');
    const alignment = alignmentValue ? Number(alignmentValue.value) : GGUF_DEFAULT_ALIGNMENT;
    const dataOffset = alignUp(r.pos, alignment);
    for (const t of tensors) {
      const bytes = t.dims.reduce((a, b) => a * b, 1) * (GGML_TYPE_BYTES[t.type as GgmlType] ?? 0);
      if (t.offset % alignment !== 0) throw r.bad(`tensor ${t.name}: offset ${t.offset} not aligned to ${alignment}`);
      if (dataOffset + t.offset + bytes > fileBytes) throw r.bad(`tensor ${t.name}: data runs past the end of the file`);
    }
    return { version, metadata, tensors, alignment, dataOffset, fileBytes };
  } finally {
    await handle.close();
  }
}

/** Reads one tensor's bytes from a parsed GGUF file. */
export async function readGgufTensor(path: string, file: GgufFile, name: string): Promise<Uint8Array> {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new AutoGlmError('invalid_request', `${path}: no tensor ${name}`);
  const bytes = t.dims.reduce((a, b) => a * b, 1) * GGML_TYPE_BYTES[t.type as GgmlType];
  const out = new Uint8Array(bytes);
  const handle = await open(path, 'r');
  try {
    await handle.read(out, 0, bytes, file.dataOffset + t.offset);
  } finally {
    await handle.close();
  }
  return out;
}

/** Sequential little-endian reads from a file handle, through a small buffer. */
class FileReader {
  pos = 0;
  private buf = Buffer.alloc(0);
  private bufStart = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly fileBytes: number,
    private readonly path: string,
  ) {}

  bad(what: string): AutoGlmError {
    return new AutoGlmError('invalid_request', `${this.path}: ${what}`);
  }

  private async take(n: number): Promise<Buffer> {
    if (this.pos + n > this.fileBytes) throw this.bad(`truncated header at byte ${this.pos}`);
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      this.bufStart = this.pos;
      this.buf = Buffer.alloc(Math.min(Math.max(n, 1 << 16), this.fileBytes - this.pos));
      await this.handle.read(this.buf, 0, this.buf.length, this.pos);
    }
    const out = this.buf.subarray(this.pos - this.bufStart, this.pos - this.bufStart + n);
    this.pos += n;
    return out;
  }

  async u32(): Promise<number> {
    return (await this.take(4)).readUInt32LE(0);
  }
  async u64(): Promise<bigint> {
    return (await this.take(8)).readBigUInt64LE(0);
  }
  async string(): Promise<string> {
    const n = Number(await this.u64());
    if (n > this.fileBytes) throw this.bad(`string length ${n} exceeds the file`);
    return (await this.take(n)).toString('utf8');
  }

  async scalar(type: GgufValueType): Promise<number | bigint | boolean | string> {
    switch (type) {
      case GgufValueType.UINT8:
        return (await this.take(1)).readUInt8(0);
      case GgufValueType.INT8:
        return (await this.take(1)).readInt8(0);
      case GgufValueType.UINT16:
        return (await this.take(2)).readUInt16LE(0);
      case GgufValueType.INT16:
        return (await this.take(2)).readInt16LE(0);
      case GgufValueType.UINT32:
        return this.u32();
      case GgufValueType.INT32:
        return (await this.take(4)).readInt32LE(0);
      case GgufValueType.FLOAT32:
        return (await this.take(4)).readFloatLE(0);
      case GgufValueType.BOOL:
        return (await this.take(1)).readUInt8(0) !== 0;
      case GgufValueType.STRING:
        return this.string();
      case GgufValueType.UINT64:
        return this.u64();
      case GgufValueType.INT64:
        return (await this.take(8)).readBigInt64LE(0);
      case GgufValueType.FLOAT64:
        return (await this.take(8)).readDoubleLE(0);
      default:
        throw this.bad(`unknown metadata value type ${type as number}`);
    }
  }
}
