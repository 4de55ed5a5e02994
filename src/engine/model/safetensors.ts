/**
 * A safetensors file: 8-byte little-endian header length, a JSON header mapping tensor
 * names to {dtype, shape, data_offsets}, then the data. Everything in the header is checked
 * against the file size before any tensor is read, and tensors are read one at a time with
 * positional reads, so host memory peaks near the largest tensor, not the model.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { AutoGlmError } from '../../errors.js';
import { DTYPE_BYTES, type SafetensorsDtype } from './dtype-convert.js';
import { fileProblem } from './model-file.js';

/** Byte sizes of every dtype the format defines; only F32/F16/BF16 can be converted. */
const ALL_DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** The format's own cap on the JSON header (100 MB). */
const MAX_HEADER_BYTES = 100_000_000;
/** Node reads at most 2 GiB - 1 per call. */
const MAX_READ_BYTES = 1 << 30;

export interface TensorInfo {
  name: string;
  /** As written in the header; `isSupportedDtype` tells whether it can be read as f32/f16. */
  dtype: string;
  shape: number[];
  /** The file holding it. */
  file: string;
  /** Absolute position of its first byte in the file. */
  fileOffset: number;
  byteLength: number;
}

export function isSupportedDtype(dtype: string): dtype is SafetensorsDtype {
  return dtype in DTYPE_BYTES;
}

export function invalidSafetensors(file: string, what: string, tensor?: string): AutoGlmError {
  return new AutoGlmError('invalid_safetensors', tensor === undefined ? `${file}: ${what}` : `${file}: tensor "${tensor}": ${what}`);
}

/** Rows [rowStart, rowStart + rowCount) of the first dimension, for tensors split at upload. */
export interface RowRange {
  rowStart: number;
  rowCount: number;
}

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    readonly fileBytes: number,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly handle: FileHandle,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    const problem = await fileProblem(path);
    if (problem) throw invalidSafetensors(path, problem.problem);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (e) {
      throw new AutoGlmError('invalid_safetensors', `${path}: cannot open: ${(e as Error).message}`, { cause: e });
    }
    try {
      const fileBytes = (await handle.stat()).size;
      const { tensors, metadata } = await readHeader(handle, path, fileBytes);
      return new SafetensorsFile(path, fileBytes, tensors, metadata, handle);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw invalidSafetensors(this.path, 'missing', name);
    return t;
  }

  /** The tensor's raw bytes, or those of a range of its rows. */
  async readBytes(name: string, rows?: RowRange): Promise<Uint8Array> {
    const t = this.info(name);
    let start = t.fileOffset;
    let length = t.byteLength;
    if (rows) {
      const numRows = t.shape[0] ?? 1;
      if (
        !Number.isInteger(rows.rowStart) ||
        !Number.isInteger(rows.rowCount) ||
        rows.rowStart < 0 ||
        rows.rowCount < 0 ||
        rows.rowStart + rows.rowCount > numRows
      ) {
        throw invalidSafetensors(
          this.path,
          `rows [${rows.rowStart}, ${rows.rowStart + rows.rowCount}) out of range of ${numRows} rows`,
          name,
        );
      }
      const rowBytes = numRows === 0 ? 0 : t.byteLength / numRows;
      start += rows.rowStart * rowBytes;
      length = rows.rowCount * rowBytes;
    }
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const want = Math.min(MAX_READ_BYTES, length - done);
      const { bytesRead } = await this.handle.read(out, done, want, start + done);
      if (bytesRead === 0) throw invalidSafetensors(this.path, `file ended after ${start + done} bytes while reading`, name);
      done += bytesRead;
    }
    return out;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

async function readHeader(
  handle: FileHandle,
  path: string,
  fileBytes: number,
): Promise<{ tensors: Map<string, TensorInfo>; metadata: Record<string, string> }> {
  if (fileBytes < 8) throw invalidSafetensors(path, `file is ${fileBytes} bytes, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  await handle.read(lenBuf, 0, 8, 0);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(fileBytes - 8)) {
    throw invalidSafetensors(path, `header length ${headerLen} runs past the end of the ${fileBytes}-byte file`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) throw invalidSafetensors(path, `header length ${headerLen} exceeds the format's 100 MB limit`);
  const headerBytes = Number(headerLen);
  const headerBuf = Buffer.alloc(headerBytes);
  await handle.read(headerBuf, 0, headerBytes, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBuf.toString('utf8'));
  } catch (e) {
    throw invalidSafetensors(path, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw invalidSafetensors(path, 'header is not a JSON object');
  const dataStart = 8 + headerBytes;
  const dataBytes = fileBytes - dataStart;
  return parseHeader(header as Record<string, unknown>, { path, dataStart, dataBytes });
}

/** Validates every entry of a parsed header against the data region's size. Exported for tests of edge cases. */
export function parseHeader(
  header: Record<string, unknown>,
  where: { path: string; dataStart: number; dataBytes: number },
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const { path, dataStart, dataBytes } = where;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (entry !== null && typeof entry === 'object' && !Array.isArray(entry)) metadata = entry as Record<string, string>;
      else throw invalidSafetensors(path, '__metadata__ is not an object');
      continue;
    }
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw invalidSafetensors(path, 'entry is not an object', name);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in ALL_DTYPE_BYTES)) {
      throw invalidSafetensors(path, `unknown dtype ${JSON.stringify(dtype)}`, name);
    }
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
      throw invalidSafetensors(path, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
    ) {
      throw invalidSafetensors(path, `data_offsets ${JSON.stringify(offsets)} is not [begin, end]`, name);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw invalidSafetensors(path, `data_offsets [${begin}, ${end}] end before they begin`, name);
    if (end > dataBytes) {
      throw invalidSafetensors(path, `data_offsets [${begin}, ${end}] run past the ${dataBytes}-byte data section (file truncated?)`, name);
    }
    const expected = (shape as number[]).reduce((a, b) => a * b, 1) * ALL_DTYPE_BYTES[dtype]!;
    if (end - begin !== expected) {
      throw invalidSafetensors(path, `holds ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${expected}`, name);
    }
    tensors.set(name, { name, dtype, shape: shape as number[], file: path, fileOffset: dataStart + begin, byteLength: end - begin });
    spans.push({ name, begin, end });
  }
  // Sorted by start, a span overlaps an earlier one exactly when it starts before the
  // furthest end seen so far (empty tensors occupy no bytes and overlap nothing).
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let furthest: { name: string; begin: number; end: number } | null = null;
  for (const cur of spans) {
    if (cur.end === cur.begin) continue;
    if (furthest && cur.begin < furthest.end) {
      throw invalidSafetensors(
        path,
        `data_offsets [${cur.begin}, ${cur.end}] overlap those of "${furthest.name}" [${furthest.begin}, ${furthest.end}]`,
        cur.name,
      );
    }
    if (!furthest || cur.end > furthest.end) furthest = cur;
  }
  return { tensors, metadata };
}
