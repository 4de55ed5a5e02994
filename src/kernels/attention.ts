/**
 * Paged attention for a varlen batch: one call per layer, using the plan that
 * prepareAttentionBatch built for the step. Records up to three dispatches: the prefill
 * kernel (row tiles of long chunks), the decode kernel (one row per item, split-K over long
 * contexts: the tiled kernel, or on CPU adapters the dims kernel of attention-decode-dims.ts
 * or the lanes kernel of attention-decode.ts)
 * and the reduce kernel that merges split partials.
 */
import { isPositiveF32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { assertKvCaches } from './kv-write.js';
import { AttentionBatch, type AttentionPath } from './attention-batch.js';
import { recordLanesDecode } from './attention-decode.js';
import { recordDimsDecode } from './attention-decode-dims.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

export { AttentionBatch, prepareAttentionBatch, type AttentionBatchOptions, type AttentionSeq } from './attention-batch.js';

export interface AttentionOptions {
  /** f32 rows of nHeads * headDim, RoPE applied, qStride apart. */
  q: GpuTensor;
  /** Elements from one row of q to the next; default nHeads * headDim (a fused QKV row is wider, q at its start). */
  qStride?: number;
  /** This layer's cache tensors (f16 or f32), layout as in kv-write.ts. */
  kCache: GpuTensor;
  vCache: GpuTensor;
  /** f32 [rows, nHeads * headDim]. */
  out: GpuTensor;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  blockSize: number;
  /** Multiplies q.k; default 1 / sqrt(headDim). */
  scale?: number;
  /** 0 = none; otherwise a query at position p sees keys in (p - slidingWindow, p]. */
  slidingWindow?: number;
  /**
   * Logit soft-capping (Gemma 2's attn_logit_softcapping): each scaled score s becomes
   * softcap * tanh(s / softcap) before the mask and softmax. Undefined or 0 = none.
   */
  softcap?: number;
  /** The CPU dims decode kernel's keys per block, 1-4 (default dimsKeysPerBlock; tests). */
  dimsKeysPerBlock?: number;
}

const WORKGROUP = 64;

/** Records one layer's attention over the paged cache for the planned batch. */
export function attention(rt: KernelRuntime, rec: Recorder, batch: AttentionBatch, o: AttentionOptions): void {
  const op = 'attention';
  if (batch.isDestroyed) throw new Error(`${op}: the batch was destroyed`);
  if (batch.nHeads !== o.nHeads || batch.nKvHeads !== o.nKvHeads || batch.headDim !== o.headDim || batch.blockSize !== o.blockSize) {
    throw new RangeError(
      `${op}: batch planned for ${batch.nHeads}/${batch.nKvHeads} heads x ${batch.headDim} dims, blocks of ${batch.blockSize}; ` +
        `called with ${o.nHeads}/${o.nKvHeads} x ${o.headDim}, blocks of ${o.blockSize}`,
    );
  }
  if (o.q.dtype !== 'f32' || o.out.dtype !== 'f32') throw new TypeError(`${op}: q and out must be f32`);
  const kvType = assertKvCaches(op, o.kCache, o.vCache);
  const stride = o.nHeads * o.headDim;
  const qStride = o.qStride ?? stride;
  if (!Number.isInteger(qStride) || qStride < stride)
    throw new RangeError(`${op}: qStride ${qStride} must be an integer >= nHeads * headDim = ${stride}`);
  if (batch.rows > 0) assertLength(op, 'q', o.q, (batch.rows - 1) * qStride + stride);
  assertLength(op, 'out', o.out, batch.rows * stride);
  const window = o.slidingWindow ?? 0;
  if (!Number.isInteger(window) || window < 0) throw new RangeError(`${op}: slidingWindow must be a non-negative integer, got ${window}`);
  const softcap = o.softcap ?? 0;
  // the shaders take it as an f32 where 0 means none
  if (softcap !== 0 && !isPositiveF32(softcap))
    throw new RangeError(`${op}: softcap must be 0 (none) or a positive finite f32, got ${softcap}`);
  const scale = o.scale ?? 1 / Math.sqrt(o.headDim);
  const dpt = Math.ceil(o.headDim / WORKGROUP);
  const tables = batch.blockTables.tensor!;

  // the Params block of attention-args.wgsl (the prefill/tiled and both CPU decode kernels)
  const kernelParams = (items: number) =>
    params()
      .u32(items)
      .u32(o.nHeads / o.nKvHeads)
      .u32(o.nKvHeads)
      .u32(o.blockSize)
      .u32(qStride)
      .u32(window)
      .f32(scale)
      .u32(stride)
      .f32(softcap);

  const run = (path: AttentionPath, items: GpuTensor, partials: GpuTensor): void => {
    const kernel = rt.kernel({
      shader: 'attention',
      defines: {
        KV: kvType,
        F16: kvType === 'f16',
        HEAD_DIM: o.headDim,
        HEADS: path.heads,
        ROWS: path.rows,
        M: path.rows * path.heads,
        DPT: dpt,
        VEC4: o.headDim % 4 === 0,
      },
      bindings: ['read', 'read', 'read', 'read', 'read', 'write', 'write'],
      params: true,
    });
    rec.dispatch(kernel, [o.q, o.kCache, o.vCache, tables, items, o.out, partials], kernelParams(path.items), grid1d(path.items, 1));
  };

  // items without split never touch partials, but the binding needs a buffer
  const partials = batch.partials.ensure(rt, 4);
  if (batch.prefill.items > 0) run(batch.prefill, batch.prefillItems.tensor!, partials);
  // the CPU decode kernels' common arguments (the dims kernel also takes out, for rows it did not split)
  const cpuDecode = () => ({
    q: o.q,
    kCache: o.kCache,
    vCache: o.vCache,
    blockTables: tables,
    items: batch.decodeItems.tensor!,
    nItems: batch.decode.items,
    partials,
    heads: batch.decode.heads,
    headDim: o.headDim,
    params: kernelParams(batch.decode.items),
  });
  if (batch.decode.items > 0 && batch.decodeDims)
    recordDimsDecode(rt, rec, { ...cpuDecode(), out: o.out, keysPerBlock: o.dimsKeysPerBlock });
  else if (batch.decode.items > 0 && batch.decodeLanes > 0) recordLanesDecode(rt, rec, { ...cpuDecode(), lanes: batch.decodeLanes });
  else if (batch.decode.items > 0) run(batch.decode, batch.decodeItems.tensor!, partials);
  if (batch.reduceItems > 0) {
    const kernel = rt.kernel({
      shader: 'attention-reduce',
      defines: { HEAD_DIM: o.headDim, M: batch.decode.heads },
      bindings: ['read', 'read', 'write'],
      params: true,
    });
    rec.dispatch(
      kernel,
      [batch.partials.tensor!, batch.reduceItemBuffer.tensor!, o.out],
      params().u32(batch.reduceItems).u32(stride),
      grid1d(batch.reduceItems, 1),
    );
  }
}
