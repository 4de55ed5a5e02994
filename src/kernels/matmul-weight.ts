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
 */
import { AutoGlmError } from '../errors.js';
import { f16BitsToF32, type KernelRuntime } from './runtime.js';
import { DTYPE_BYTES, type GpuTensor } from './tensor.js';

export type WeightDType = 'f32' | 'f16';

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
  readonly parts: readonly MatmulWeightPart[];
  /** f32 [N], when the layer has one. */
  readonly bias?: GpuTensor;
  /** Bytes a full pass over the weight (and bias) reads, for bandwidth accounting. */
  readonly bytes: number;
  destroy(): void;
}

export interface MatmulWeightInit {
  /** Row-major [N, K]: f32 values, or raw f16 bits (IEEE half) when dtype is 'f16'. */
  data: Float32Array | Uint16Array;
  N: number;
  K: number;
  dtype: WeightDType;
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
  if (dtype === 'f16' ? !(data instanceof Uint16Array) : !(data instanceof Float32Array)) {
    throw new TypeError(`prepareMatmulWeight: ${dtype} data must be a ${dtype === 'f16' ? 'Uint16Array of f16 bits' : 'Float32Array'}`);
  }
  if (data.length !== N * K) throw new RangeError(`prepareMatmulWeight: data has ${data.length} elements, [${N}, ${K}] needs ${N * K}`);
  if (init.bias && init.bias.length !== N) throw new RangeError(`prepareMatmulWeight: bias has ${init.bias.length} elements, needs ${N}`);
}

/**
 * Columns per part: as many as fit the binding, a multiple of 64 so parts keep whole
 * workgroups of columns (else of 4, or of 8 for f16, whose rows are stored in vec4 pairs).
 */
export function columnsPerPart(N: number, K: number, elementBytes: number, maxPartBytes: number): number {
  const fit = Math.floor(maxPartBytes / (K * elementBytes));
  if (fit >= N) return N;
  const unit = elementBytes === 2 ? 8 : 4;
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

/** Uploads W (and its bias) once, re-laid out K-major and split into binding-sized parts. */
export function prepareMatmulWeight(rt: KernelRuntime, init: MatmulWeightInit): MatmulWeight {
  checkInit(init);
  const { N, K } = init;
  // an adapter without shader-f16 gets f32 weights: twice the bytes, same results
  const dtype: WeightDType = init.dtype === 'f16' && !rt.hasF16 ? 'f32' : init.dtype;
  const data = init.dtype === 'f16' && dtype === 'f32' ? f16BitsToF32(init.data as Uint16Array) : init.data;
  const elementBytes = DTYPE_BYTES[dtype];
  const perPart = columnsPerPart(N, K, elementBytes, init.maxPartBytes ?? rt.maxBindingBytes);

  const parts: MatmulWeightPart[] = [];
  let bytes = 0;
  try {
    for (let n0 = 0; n0 < N; n0 += perPart) {
      const n = Math.min(perPart, N - n0);
      const ldw4 = dtype === 'f16' ? 2 * Math.ceil(n / 8) : Math.ceil(n / 4);
      const host = dtype === 'f16' ? new Uint16Array(K * ldw4 * 4) : new Float32Array(K * ldw4 * 4);
      transposeColumns(data, host, K, n0, n, ldw4);
      const tensor = rt.upload(dtype, host, `${init.label ?? 'matmul-weight'}[${n0}:${n0 + n}]`);
      parts.push({ tensor, n0, n, ldw4 });
      bytes += K * n * elementBytes;
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
