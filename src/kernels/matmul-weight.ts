/**
 * Matmul weights as the kernels want them: uploaded once at load, K-major.
 *
 * Weights arrive as [N, K] (safetensors: out_features x in_features). The matmul and GEMV
 * kernels give each invocation four adjacent output columns and walk k, so they want W
 * transposed to K-major with the columns in vec4s: at each k the lanes of a workgroup then
 * read one contiguous run (a probe on lavapipe ran a register-blocked kernel about twice
 * as fast on this layout as on [N, K]). Rows are padded to a multiple of 4 columns with
 * zeros so that vec4 loads never straddle a row.
 *
 * The columns are stored in blocks of WEIGHT_BLOCK_COLS4 vec4s (256 columns), each block
 * K-major on its own ([K][block width] vec4s, the blocks one after another), so a GEMV
 * workgroup, which covers one block, streams one contiguous range instead of a 1 KiB run
 * every ldw4 * 16 bytes. On lavapipe, where a workgroup runs on one core, the hardware
 * prefetchers then follow it: 4096 x 4096 f32 GEMV 12.9 -> 14.6 GB/s (f16 7.0 -> 7.6),
 * measured back to back. Element (k, column c4 * 4 + e) of a part lives at vec4
 * b * WEIGHT_BLOCK_COLS4 * K + k * bw + (c4 - b * WEIGHT_BLOCK_COLS4), lane e, where
 * b = floor(c4 / WEIGHT_BLOCK_COLS4) and bw = min(WEIGHT_BLOCK_COLS4, ldw4 - b * WEIGHT_BLOCK_COLS4).
 * The kernels compute the same index with wColumn in shaders/matmul-args.wgsl.
 *
 * One storage binding may cover at most rt.maxBindingBytes (128 MiB on lavapipe), less
 * than an LM head of 151936 x 4096 f16, so the columns are split into parts that each fit
 * one binding; the matmul dispatches once per part.
 *
 * int8 weights (int8-quant.ts: symmetric, one f32 scale per column and group of k) keep the
 * same column blocks, with 16 bytes per vec4 column and four k steps: a part is an array of
 * vec4<u32> where word j of the vec4 at (k4, c4) holds k = 4 * k4 + j of the four columns
 * c4 * 4 .. c4 * 4 + 3, one byte each (column c4 * 4 + e in bits 8e..8e+7). So one 16-byte
 * load gives a lane four k steps of its four columns (gemv-i8.wgsl, matmul-i8.wgsl). The
 * rows are ceil(K / 4) such k quads (K padded with zero weights), blocked as above with
 * ceil(K / 4) for K; after them, in the same buffer, the scales: ceil(K / groupSize) rows
 * of vec4<f32> columns in the same blocks (scale of (group g, column c4 * 4 + e) at vec4
 * ceil(K / 4) * ldw4 + [the blocked index of (g, c4)], lane e). One binding per part, as
 * for f16 and f32.
 */
import { AutoGlmError } from '../errors.js';
import { allocateQuantized, checkGroupSize, int8Groups, INT8_GROUP_SIZE, quantizeInt8Into, type QuantizedInt8 } from './int8-quant.js';
import { f16BitsToF32, type KernelRuntime } from './runtime.js';
import { DTYPE_BYTES, type GpuTensor } from './tensor.js';

export type WeightDType = 'f32' | 'f16' | 'int8';

/** vec4 columns per stored block (see the file comment); the kernels get it as a constant. */
export const WEIGHT_BLOCK_COLS4 = 64;

/** One column range [n0, n0 + n) of W, stored K-major in column blocks (see the file comment). */
export interface MatmulWeightPart {
  readonly tensor: GpuTensor;
  readonly n0: number;
  readonly n: number;
  /** vec4 columns per stored row: ceil(n / 4), rounded up to even for f16 (gemv-f16x8.wgsl reads vec4 pairs). */
  readonly ldw4: number;
}

export interface MatmulWeight {
  /** Output features. */
  readonly N: number;
  /** Input features. */
  readonly K: number;
  /** Stored dtype: f16 requested on an adapter without shader-f16 is stored as f32. */
  readonly dtype: WeightDType;
  /** int8: k per scale (int8-quant.ts). */
  readonly groupSize?: number;
  readonly parts: readonly MatmulWeightPart[];
  /** f32 [N], when the layer has one. */
  readonly bias?: GpuTensor;
  /** Bytes a full pass over the weight (and bias) reads, for bandwidth accounting. */
  readonly bytes: number;
  destroy(): void;
}

export interface MatmulWeightInit {
  /**
   * Row-major [N, K]: f32 values, or raw f16 bits (IEEE half) when dtype is 'f16'. For
   * 'int8': f32 values (quantized here with `groupSize`) or already quantized ones.
   */
  data: Float32Array | Uint16Array | QuantizedInt8;
  N: number;
  K: number;
  dtype: WeightDType;
  /** int8 from f32 data: k per scale (default INT8_GROUP_SIZE). */
  groupSize?: number;
  /** f32 [N]. */
  bias?: Float32Array;
  /** Override of the largest bytes per part (default rt.maxBindingBytes): tests split small weights with it. */
  maxPartBytes?: number;
  label?: string;
}

function checkInit(init: MatmulWeightInit): void {
  const { data, N, K, dtype } = init;
  for (const [name, v] of [
    ['N', N],
    ['K', K],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`prepareMatmulWeight: ${name} must be a positive integer, got ${v}`);
  }
  if (dtype === 'int8') {
    if (!(data instanceof Float32Array) && !isQuantized(data)) {
      throw new TypeError('prepareMatmulWeight: int8 data must be a Float32Array or quantized int8 weights');
    }
    if (isQuantized(data) && data.scales.length !== N * int8Groups(K, data.groupSize)) {
      throw new RangeError(
        `prepareMatmulWeight: int8 scales have ${data.scales.length} elements, [${N}, ${K}] needs ${N * int8Groups(K, data.groupSize)}`,
      );
    }
  } else if (dtype === 'f16' ? !(data instanceof Uint16Array) : !(data instanceof Float32Array)) {
    throw new TypeError(`prepareMatmulWeight: ${dtype} data must be a ${dtype === 'f16' ? 'Uint16Array of f16 bits' : 'Float32Array'}`);
  }
  const length = isQuantized(data) ? data.q.length : data.length;
  if (length !== N * K) throw new RangeError(`prepareMatmulWeight: data has ${length} elements, [${N}, ${K}] needs ${N * K}`);
  if (init.bias && init.bias.length !== N) throw new RangeError(`prepareMatmulWeight: bias has ${init.bias.length} elements, needs ${N}`);
}

function isQuantized(data: MatmulWeightInit['data']): data is QuantizedInt8 {
  return !ArrayBuffer.isView(data);
}

/**
 * Columns per part: as many as fit the binding, a multiple of 64 so parts keep whole
 * workgroups of columns (else of 4, or of 8 for f16, whose rows are stored in vec4 pairs).
 */
export function columnsPerPart(N: number, K: number, elementBytes: number, maxPartBytes: number): number {
  return columnsFitting(N, K, K * elementBytes, elementBytes === 2 ? 8 : 4, maxPartBytes);
}

function columnsFitting(N: number, K: number, columnBytes: number, unit: number, maxPartBytes: number): number {
  const fit = Math.floor(maxPartBytes / columnBytes);
  if (fit >= N) return N;
  const cols = fit >= 64 ? fit - (fit % 64) : fit - (fit % unit);
  if (cols < unit) {
    throw new AutoGlmError('gpu_out_of_memory', `a weight with K=${K} does not fit ${unit} columns in one ${maxPartBytes}-byte binding`);
  }
  return cols;
}

/**
 * Writes columns [n0, n0 + n) of src ([N, K] row-major) into dst in the blocked K-major
 * layout (the file comment): block by block, each one a transpose done in 64 x 64 tiles so
 * that both the reads and the strided writes stay in cache.
 */
function transposeColumns<T extends Float32Array | Uint16Array>(src: T, dst: T, K: number, n0: number, n: number, ldw4: number): void {
  const TILE = 64;
  const blockCols = WEIGHT_BLOCK_COLS4 * 4;
  for (let b0 = 0; b0 < n; b0 += blockCols) {
    // this block's columns [b0, bEnd), stored as [K][bw] with bw its padded width
    const bEnd = Math.min(b0 + blockCols, n);
    const bw = Math.min(WEIGHT_BLOCK_COLS4, ldw4 - b0 / 4) * 4;
    const base = b0 * K;
    for (let nb = b0; nb < bEnd; nb += TILE) {
      const nEnd = Math.min(nb + TILE, bEnd);
      for (let kb = 0; kb < K; kb += TILE) {
        const kEnd = Math.min(kb + TILE, K);
        for (let j = nb; j < nEnd; j++) {
          const srcRow = (n0 + j) * K;
          const col = base + (j - b0);
          for (let k = kb; k < kEnd; k++) dst[col + k * bw] = src[srcRow + k]!;
        }
      }
    }
  }
}

/**
 * Writes columns [n0, n0 + n) of quantized W into one int8 part (the file comment): the k
 * quads, then the scales. Each word is built from its four columns' bytes at one k (four
 * source rows read side by side) and written whole.
 */
function int8Part(w: QuantizedInt8, K: number, n0: number, n: number, ldw4: number): Uint32Array {
  const K4 = Math.ceil(K / 4);
  const G = int8Groups(K, w.groupSize);
  const words = new Uint32Array((K4 + G) * ldw4 * 4);
  const scales = new Float32Array(words.buffer);
  const q = w.q;
  // the four source rows of a vec4 column; columns past n (the last one's padding) read
  // row -1, which stands for zeros
  const rows = [0, 0, 0, 0];
  for (let c4 = 0; c4 < Math.ceil(n / 4); c4++) {
    const blk = Math.floor(c4 / WEIGHT_BLOCK_COLS4);
    const bw = Math.min(WEIGHT_BLOCK_COLS4, ldw4 - blk * WEIGHT_BLOCK_COLS4);
    // word 0 of vec4 (k quad 0, c4) in its block; quad k4 is bw vec4s further on
    const at = 4 * (blk * WEIGHT_BLOCK_COLS4 * K4 + (c4 - blk * WEIGHT_BLOCK_COLS4));
    for (let e = 0; e < 4; e++) rows[e] = 4 * c4 + e < n ? (n0 + 4 * c4 + e) * K : -1;
    const [r0, r1, r2, r3] = rows as [number, number, number, number];
    if (r3 >= 0) {
      for (let k = 0; k < K; k++) {
        words[at + (k >> 2) * 4 * bw + (k & 3)] =
          (q[r0 + k]! & 0xff) | ((q[r1 + k]! & 0xff) << 8) | ((q[r2 + k]! & 0xff) << 16) | (q[r3 + k]! << 24);
      }
    } else {
      for (let k = 0; k < K; k++) {
        let word = 0;
        for (let e = 0; e < 4; e++) if (rows[e]! >= 0) word |= (q[rows[e]! + k]! & 0xff) << (8 * e);
        words[at + (k >> 2) * 4 * bw + (k & 3)] = word;
      }
    }
  }
  const sOff = 4 * K4 * ldw4;
  for (let j = 0; j < n; j++) {
    const c4 = j >> 2;
    const blk = Math.floor(c4 / WEIGHT_BLOCK_COLS4);
    const bw = Math.min(WEIGHT_BLOCK_COLS4, ldw4 - blk * WEIGHT_BLOCK_COLS4);
    const at = sOff + 4 * (blk * WEIGHT_BLOCK_COLS4 * G + (c4 - blk * WEIGHT_BLOCK_COLS4)) + (j & 3);
    for (let g = 0; g < G; g++) scales[at + 4 * g * bw] = w.scales[(n0 + j) * G + g]!;
  }
  return words;
}

/** How one dtype's parts are cut and laid out. */
interface PartLayout {
  perPart: number;
  ldw4(n: number): number;
  /** The part's host data and the bytes a pass over it reads (padding left out). */
  host(n0: number, n: number, ldw4: number): { data: Float32Array | Uint16Array | Uint32Array; bytes: number };
}

function floatLayout(init: MatmulWeightInit, dtype: 'f16' | 'f32', maxPartBytes: number): PartLayout {
  const { K } = init;
  const data = (init.dtype === 'f16' && dtype === 'f32' ? f16BitsToF32(init.data as Uint16Array) : init.data) as Float32Array | Uint16Array;
  const elementBytes = DTYPE_BYTES[dtype];
  return {
    perPart: columnsPerPart(init.N, K, elementBytes, maxPartBytes),
    ldw4: (n) => (dtype === 'f16' ? 2 * Math.ceil(n / 8) : Math.ceil(n / 4)),
    host(n0, n, ldw4) {
      const host = dtype === 'f16' ? new Uint16Array(K * ldw4 * 4) : new Float32Array(K * ldw4 * 4);
      transposeColumns(data, host, K, n0, n, ldw4);
      return { data: host, bytes: K * n * elementBytes };
    },
  };
}

function int8Layout(init: MatmulWeightInit, maxPartBytes: number): { layout: PartLayout; groupSize: number } {
  const { N, K } = init;
  let w: QuantizedInt8;
  if (init.data instanceof Float32Array) {
    w = allocateQuantized(N, K, init.groupSize ?? INT8_GROUP_SIZE);
    quantizeInt8Into(init.data, N, K, w, 0, init.label);
  } else {
    w = init.data as QuantizedInt8;
    checkGroupSize(w.groupSize);
  }
  const G = int8Groups(K, w.groupSize);
  const layout: PartLayout = {
    // a column: ceil(K / 4) words of k quads and G scales
    perPart: columnsFitting(N, K, 4 * (Math.ceil(K / 4) + G), 4, maxPartBytes),
    ldw4: (n) => Math.ceil(n / 4),
    host: (n0, n, ldw4) => ({ data: int8Part(w, K, n0, n, ldw4), bytes: n * (K + 4 * G) }),
  };
  return { layout, groupSize: w.groupSize };
}

/** Uploads W (and its bias) once, re-laid out K-major and split into binding-sized parts. */
export function prepareMatmulWeight(rt: KernelRuntime, init: MatmulWeightInit): MatmulWeight {
  checkInit(init);
  const { N, K } = init;
  const maxPartBytes = init.maxPartBytes ?? rt.maxBindingBytes;
  // an adapter without shader-f16 gets f32 weights: twice the bytes, same results
  const dtype: WeightDType = init.dtype === 'f16' && !rt.hasF16 ? 'f32' : init.dtype;
  const int8 = dtype === 'int8' ? int8Layout(init, maxPartBytes) : undefined;
  const layout = int8?.layout ?? floatLayout(init, dtype as 'f16' | 'f32', maxPartBytes);

  const parts: MatmulWeightPart[] = [];
  let bytes = 0;
  try {
    for (let n0 = 0; n0 < N; n0 += layout.perPart) {
      const n = Math.min(layout.perPart, N - n0);
      const ldw4 = layout.ldw4(n);
      const host = layout.host(n0, n, ldw4);
      const label = `${init.label ?? 'matmul-weight'}[${n0}:${n0 + n}]`;
      const tensor = rt.upload(dtype === 'int8' ? 'u32' : dtype, host.data, label);
      parts.push({ tensor, n0, n, ldw4 });
      bytes += host.bytes;
    }
  } catch (e) {
    for (const p of parts) rt.destroyBuffer(p.tensor.buffer);
    throw e;
  }
  const bias = init.bias ? rt.upload('f32', init.bias, `${init.label ?? 'matmul-weight'}.bias`) : undefined;
  if (bias) bytes += N * 4;
  let destroyed = false;
  return {
    N,
    K,
    dtype,
    groupSize: int8?.groupSize,
    parts,
    bias,
    bytes,
    destroy() {
      if (destroyed) return;
      destroyed = true;
      for (const p of parts) rt.destroyBuffer(p.tensor.buffer);
      if (bias) rt.destroyBuffer(bias.buffer);
    },
  };
}
