/**
 * The paged KV cache's layout, its allocation, and the kernel that writes new keys and
 * values into it.
 *
 * Layout of each per-layer tensor (K and V alike): [block][kvHead][slotInBlock][dim].
 * A block of one kv head is then one contiguous run of blockSize * headDim values, which
 * is what the attention kernels walk. A token's slot is
 * `blockTable[floor(pos / blockSize)] * blockSize + pos % blockSize`.
 */
import { AutoGlmError } from '../errors.js';
import { assertNonNegativeInt, assertPositiveInt } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import { DTYPE_BYTES, type GpuTensor } from './tensor.js';

export type KvDType = 'f16' | 'f32';

export interface KvCacheDims {
  numBlocks: number;
  /** Tokens per block (default 16 in the engine). */
  blockSize: number;
  nKvHeads: number;
  headDim: number;
}

export interface KvCache {
  k: GpuTensor;
  v: GpuTensor;
}

/** Elements in one per-layer K (or V) tensor. */
export function kvCacheLength(dims: KvCacheDims): number {
  return dims.numBlocks * dims.blockSize * dims.nKvHeads * dims.headDim;
}

/** Element index of (slot, kvHead, dim) in a cache tensor: the layout in one place. */
export function kvCacheIndex(dims: Omit<KvCacheDims, 'numBlocks'>, slot: number, kvHead: number, dim: number): number {
  const block = Math.floor(slot / dims.blockSize);
  return ((block * dims.nKvHeads + kvHead) * dims.blockSize + (slot % dims.blockSize)) * dims.headDim + dim;
}

/** Largest numBlocks whose per-layer tensor fits one storage binding of this runtime. */
export function maxKvBlocks(rt: KernelRuntime, dims: Omit<KvCacheDims, 'numBlocks'> & { dtype: KvDType }): number {
  return Math.floor(rt.maxBindingBytes / (dims.blockSize * dims.nKvHeads * dims.headDim * DTYPE_BYTES[dims.dtype]));
}

/**
 * Allocates one layer's K and V tensors (contents undefined). dtype defaults to the
 * runtime's preferred one (f16 where the adapter has shader-f16 and f32 is not forced).
 */
export function createKvCache(rt: KernelRuntime, options: KvCacheDims & { dtype?: KvDType; label?: string }): KvCache {
  const dtype = options.dtype ?? rt.preferredDType;
  const { numBlocks, blockSize, nKvHeads, headDim } = options;
  for (const [name, v] of Object.entries({ numBlocks, blockSize, nKvHeads, headDim })) {
    if (!Number.isInteger(v) || v < 1)
      throw new AutoGlmError('internal_error', `createKvCache: ${name} must be a positive integer, got ${v}`);
  }
  if (dtype === 'f16' && !rt.hasF16) {
    throw new AutoGlmError('gpu_unavailable', `createKvCache: an f16 cache needs shader-f16, which ${rt.adapterName} lacks`);
  }
  const bytes = kvCacheLength(options) * DTYPE_BYTES[dtype];
  if (bytes > rt.maxBindingBytes) {
    throw new AutoGlmError(
      'gpu_out_of_memory',
      `KV cache of ${numBlocks} blocks x ${blockSize} tokens x ${nKvHeads} kv heads x ${headDim} dims (${dtype}) is ${bytes} bytes per layer tensor, ` +
        `over this adapter's maxStorageBufferBindingSize of ${rt.maxBindingBytes} bytes; use at most ${maxKvBlocks(rt, { blockSize, nKvHeads, headDim, dtype })} blocks`,
    );
  }
  const label = options.label ?? 'kv';
  return {
    k: rt.tensor(dtype, kvCacheLength(options), `${label}.k`),
    v: rt.tensor(dtype, kvCacheLength(options), `${label}.v`),
  };
}

export interface KvWriteOptions {
  /** New keys (after RoPE), f32 [rows, nKvHeads * headDim]. */
  k: GpuTensor;
  /** New values, f32 [rows, nKvHeads * headDim]. */
  v: GpuTensor;
  /** u32 [rows]: slot = blockId * blockSize + offsetInBlock. */
  slots: GpuTensor;
  kCache: GpuTensor;
  vCache: GpuTensor;
  rows: number;
  nKvHeads: number;
  headDim: number;
  blockSize: number;
  /** Elements from one row of k (and of v) to the next; default nKvHeads * headDim (a fused QKV row is wider). */
  rowStride?: number;
  /** Element offsets of row 0 in k and in v (where k and v start in a fused QKV row); default 0. */
  kOffset?: number;
  vOffset?: number;
}

/** A layer's K and V cache tensors must share one of the cache dtypes; returns it. */
export function assertKvCaches(op: string, kCache: GpuTensor, vCache: GpuTensor): KvDType {
  const dtype = kCache.dtype;
  if ((dtype !== 'f16' && dtype !== 'f32') || vCache.dtype !== dtype) {
    throw new TypeError(`${op}: caches must both be f16 or both f32, got ${kCache.dtype} and ${vCache.dtype}`);
  }
  return dtype;
}

/** A layer's K and V cache tensors must be equally long and hold whole blocks of the given shape. */
export function assertKvCacheBlocks(op: string, kCache: GpuTensor, vCache: GpuTensor, dims: Omit<KvCacheDims, 'numBlocks'>): void {
  const { blockSize, nKvHeads, headDim } = dims;
  if (kCache.length % (blockSize * nKvHeads * headDim) !== 0 || vCache.length !== kCache.length) {
    throw new RangeError(`${op}: cache length ${kCache.length} is not whole blocks of ${blockSize}x${nKvHeads}x${headDim}`);
  }
}

/** Records the write of `rows` new K/V rows into their cache slots. */
export function kvWrite(rt: KernelRuntime, rec: Recorder, o: KvWriteOptions): void {
  const op = 'kvWrite';
  if (o.k.dtype !== 'f32' || o.v.dtype !== 'f32') throw new TypeError(`${op}: new k and v must be f32`);
  if (o.slots.dtype !== 'u32') throw new TypeError(`${op}: slots must be u32`);
  const cacheType = assertKvCaches(op, o.kCache, o.vCache);
  const width = o.nKvHeads * o.headDim;
  const n = o.rows * width;
  const rowStride = o.rowStride ?? width;
  const kOffset = o.kOffset ?? 0;
  const vOffset = o.vOffset ?? 0;
  assertPositiveInt(op, { rowStride });
  assertNonNegativeInt(op, { kOffset, vOffset });
  if (rowStride < width) throw new RangeError(`${op}: rowStride ${rowStride} is less than nKvHeads * headDim = ${width}`);
  assertLength(op, 'k', o.k, kOffset + (o.rows - 1) * rowStride + width);
  assertLength(op, 'v', o.v, vOffset + (o.rows - 1) * rowStride + width);
  assertLength(op, 'slots', o.slots, o.rows);
  assertKvCacheBlocks(op, o.kCache, o.vCache, o);
  const kernel = rt.kernel({
    shader: 'kv-write',
    defines: { KV: cacheType, F16: cacheType === 'f16' },
    bindings: ['read', 'read', 'read', 'write', 'write'],
    params: true,
  });
  rec.dispatch(
    kernel,
    [o.k, o.v, o.slots, o.kCache, o.vCache],
    params().u32(n).u32(o.nKvHeads).u32(o.headDim).u32(o.blockSize).u32(rowStride).u32(kOffset).u32(vOffset),
    grid1d(n, 256),
  );
}
