/**
 * The per-step attention plan: which query rows go to the prefill kernel and which to the
 * decode kernel, how long decode contexts are split (split-K), and the GPU buffers that
 * carry it (work items, the flat block-table buffer, split partials). Built once per
 * engine step on the host, uploaded with a few writeBuffers, then used by every layer.
 *
 * A work item is one workgroup's job: up to ROWS query rows of one sequence x HEADS query
 * heads that share one kv head, over a key range. See shaders/attention.wgsl.
 */
import { AutoGlmError } from '../errors.js';
import { DECODE_LANES } from './attention-decode.js';
import { DIMS_DECODE_LANES, dimsDecodeSupported } from './attention-decode-dims.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

/** One sequence of the batch, in the varlen form the engine builds. */
export interface AttentionSeq {
  /** Batch row of the sequence's first new token. */
  qStart: number;
  /** New tokens of this step (1 for plain decode). */
  qLen: number;
  /** Tokens in the cache including the new ones. */
  kvLen: number;
  /** Block ids holding positions [0, kvLen), in order. */
  blockTable: readonly number[];
}

export interface AttentionBatchOptions {
  seqs: readonly AttentionSeq[];
  blockSize: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Blocks in the cache, to check block ids (optional). */
  numBlocks?: number;
  /** A previous step's batch whose GPU buffers are reused (and grown when needed). */
  reuse?: AttentionBatch;
  /** Sequences with at most this many new tokens take the decode path (default 4; every sequence with the dims decode kernel). */
  decodeMaxRows?: number;
  /** Split-K aims for about this many decode workgroups in all (default 256). */
  targetWorkgroups?: number;
  /** A split covers at least this many keys (default 256; a multiple of 64 is best). */
  minKeysPerSplit?: number;
  /** At most this many splits per decode row (default 32). */
  maxSplits?: number;
  /**
   * Decode kernel: 0 = the tiled kernel (attention.wgsl), n > 0 = keys spread over n lanes
   * (attention-decode.wgsl, every item writes n partials that the reduce merges). Default:
   * DECODE_LANES on CPU adapters (lavapipe) when headDim is a multiple of 4 up to 128, else 0.
   */
  decodeLanes?: number;
  /**
   * Decode kernel with the head dims spread over one subgroup's lanes and all heads of a kv
   * group per item (attention-decode-dims.wgsl: rows it does not split go straight to out,
   * a split row's items write one partial each). Default: on CPU
   * adapters where dimsDecodeSupported, unless decodeLanes is given; true where it is not
   * supported is an error.
   */
  decodeDims?: boolean;
}

/** u32 words per work item (the WGSL WorkItem struct) and per reduce item. */
export const WORK_ITEM_WORDS = 8;
export const REDUCE_ITEM_WORDS = 4;
const NO_PARTIAL = 0xffffffff;
/** Query heads per work item are capped so that the item's queries fit in registers. */
const MAX_HEADS_PER_ITEM = 8;
/** Largest head dim the lanes decode kernel takes by default (compile time, see below). */
const LANES_MAX_HEAD_DIM = 128;
/** Query floats (heads x headDim) per lanes-decode item, see decodeHeads below. */
const LANES_QUERY_FLOATS = 64;
/** Query vectors (rows x heads) per prefill work item. */
const PREFILL_QUERIES = 16;
/** The kernels' one-tile-per-invocation scoring and DPT accumulators assume this. */
export const MAX_HEAD_DIM = 256;

/** The dispatch shape one path of the plan uses. */
export interface AttentionPath {
  readonly rows: number;
  readonly heads: number;
  readonly items: number;
}

function fail(message: string): never {
  throw new AutoGlmError('internal_error', `prepareAttentionBatch: ${message}`);
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) fail(`${name} must be an integer >= ${min}, got ${v}`);
}

/** Largest divisor of g that is <= cap. */
function headsPerItem(g: number, cap = MAX_HEADS_PER_ITEM): number {
  for (let h = Math.min(g, cap); h > 1; h--) if (g % h === 0) return h;
  return 1;
}

/**
 * A GPU buffer that is reused across steps and grows (by doubling) when a step needs more;
 * the buffers it outgrows go back to the runtime's pool.
 */
class GrowableTensor {
  tensor: GpuTensor | null = null;

  constructor(
    private readonly dtype: 'u32' | 'f32',
    private readonly label: string,
  ) {}

  ensure(rt: KernelRuntime, length: number): GpuTensor {
    const need = Math.max(length, 4);
    if (this.tensor && this.tensor.length >= need) return this.tensor;
    if (this.tensor) rt.releaseTensor(this.tensor);
    const capacity = Math.max(need, 2 * (this.tensor?.length ?? 0));
    this.tensor = rt.pooledTensor(this.dtype, capacity, this.label);
    return this.tensor;
  }

  destroy(rt: KernelRuntime): void {
    if (this.tensor && !rt.ctx.isDestroyed) rt.releaseTensor(this.tensor);
    this.tensor = null;
  }
}

export class AttentionBatch {
  /** Batch rows covered (max qStart + qLen). */
  rows = 0;
  blockSize = 0;
  nHeads = 0;
  nKvHeads = 0;
  headDim = 0;
  prefill: AttentionPath = { rows: 1, heads: 1, items: 0 };
  decode: AttentionPath = { rows: 1, heads: 1, items: 0 };
  reduceItems = 0;
  /** Decode rows whose keys were split over more than one workgroup. */
  splitRows = 0;
  /** Lanes of the lanes decode kernel, 0 when another decode kernel runs (see AttentionBatchOptions). */
  decodeLanes = 0;
  /** Whether the dims decode kernel runs (see AttentionBatchOptions). */
  decodeDims = false;
  readonly blockTables = new GrowableTensor('u32', 'attn.block-tables');
  readonly prefillItems = new GrowableTensor('u32', 'attn.prefill-items');
  readonly decodeItems = new GrowableTensor('u32', 'attn.decode-items');
  readonly reduceItemBuffer = new GrowableTensor('u32', 'attn.reduce-items');
  readonly partials = new GrowableTensor('f32', 'attn.partials');
  private destroyed = false;

  constructor(private readonly rt: KernelRuntime) {}

  get runtime(): KernelRuntime {
    return this.rt;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /** Frees the plan's GPU buffers (the batch cannot be used or reused afterwards). */
  destroy(): void {
    for (const g of [this.blockTables, this.prefillItems, this.decodeItems, this.reduceItemBuffer, this.partials]) g.destroy(this.rt);
    this.destroyed = true;
  }
}

/**
 * Plans one engine step's attention and uploads the plan. Call once per step, before
 * recording the layers; pass the previous step's batch as `reuse` to recycle its buffers
 * (safe once that step has been submitted: writeBuffer is ordered after earlier submits).
 */
export function prepareAttentionBatch(rt: KernelRuntime, o: AttentionBatchOptions): AttentionBatch {
  const { seqs, blockSize, nHeads, nKvHeads, headDim } = o;
  checkInt('blockSize', blockSize, 1);
  checkInt('nHeads', nHeads, 1);
  checkInt('nKvHeads', nKvHeads, 1);
  checkInt('headDim', headDim, 1);
  if (headDim > MAX_HEAD_DIM) fail(`headDim ${headDim} is over the supported ${MAX_HEAD_DIM}`);
  if (nHeads % nKvHeads !== 0) fail(`nKvHeads ${nKvHeads} must divide nHeads ${nHeads}`);
  const targetWorkgroups = o.targetWorkgroups ?? 256;
  const minKeysPerSplit = Math.max(1, o.minKeysPerSplit ?? 256);
  const maxSplits = Math.max(1, o.maxSplits ?? 32);
  const dims = o.decodeDims ?? (o.decodeLanes === undefined && rt.ctx.kernelProfile === 'cpu' && dimsDecodeSupported(rt, headDim));
  if (dims && !dimsDecodeSupported(rt, headDim))
    fail(
      `the dims decode kernel needs subgroups of ${DIMS_DECODE_LANES}+ lanes and headDim a multiple of ${4 * DIMS_DECODE_LANES}, got ${headDim}`,
    );
  // The dims kernel also takes prefill rows (each row one item over its causal keys): on
  // lavapipe it ran a 100M-model prefill step's attention faster than the tiled kernel,
  // whose workgroup memory and barriers are coroutine switches there.
  const decodeMaxRows = o.decodeMaxRows ?? (dims ? Number.MAX_SAFE_INTEGER : 4);
  const decodeLanes = dims
    ? 0
    : (o.decodeLanes ?? (rt.ctx.kernelProfile === 'cpu' && headDim % 4 === 0 && headDim <= LANES_MAX_HEAD_DIM ? DECODE_LANES : 0));
  checkInt('decodeLanes', decodeLanes, 0);
  if (decodeLanes > 0 && headDim % 4 !== 0) fail(`the lanes decode kernel needs headDim a multiple of 4, got ${headDim}`);

  const group = nHeads / nKvHeads;
  const heads = headsPerItem(group);
  const headGroups = nHeads / heads;
  const prefillRows = Math.max(1, Math.floor(PREFILL_QUERIES / heads));
  // The lanes decode kernel keeps each item's queries and accumulators in named registers,
  // and LLVM's compile time on lavapipe grows steeply with that state (3 heads x 64 dims:
  // 9-23 s, 6 x 256: over 5 minutes; 1 x 64: 4 s cold). Items take one head per 64 dims:
  // K/V are then read once per query head instead of once per kv head, which still ran
  // 2.2-2.7x faster than the tiled kernel (bench/attention.ts).
  const decodeHeads = decodeLanes > 0 ? headsPerItem(group, Math.max(1, Math.floor(LANES_QUERY_FLOATS / headDim))) : heads;
  // partials each split item writes: one per lane (lanes kernel) or one (dims kernel)
  const partialsPerItem = dims ? 1 : decodeLanes;
  const decodeHeadGroups = nHeads / decodeHeads;

  // validate and lay out the flat block-table buffer
  let tableWords = 0;
  let rows = 0;
  let decodeRows = 0;
  const usedRows = new Set<number>();
  seqs.forEach((s, i) => {
    checkInt(`seqs[${i}].qStart`, s.qStart, 0);
    checkInt(`seqs[${i}].qLen`, s.qLen, 1);
    checkInt(`seqs[${i}].kvLen`, s.kvLen, s.qLen);
    const blocks = Math.ceil(s.kvLen / blockSize);
    if (s.blockTable.length < blocks)
      fail(`seqs[${i}] has ${s.kvLen} tokens but a block table of ${s.blockTable.length} blocks of ${blockSize}`);
    for (let b = 0; b < blocks; b++) {
      const id = s.blockTable[b]!;
      if (!Number.isInteger(id) || id < 0 || (o.numBlocks !== undefined && id >= o.numBlocks)) {
        fail(`seqs[${i}].blockTable[${b}] = ${id} is not a block id${o.numBlocks !== undefined ? ` below ${o.numBlocks}` : ''}`);
      }
    }
    for (let r = s.qStart; r < s.qStart + s.qLen; r++) {
      if (usedRows.has(r)) fail(`batch row ${r} belongs to two sequences`);
      usedRows.add(r);
    }
    tableWords += blocks;
    rows = Math.max(rows, s.qStart + s.qLen);
    if (s.qLen <= decodeMaxRows) decodeRows += s.qLen;
  });

  // split-K: enough decode workgroups to fill the device, each split >= minKeysPerSplit keys
  const decodeBaseItems = decodeRows * decodeHeadGroups;
  const wantedSplits = decodeBaseItems > 0 ? Math.max(1, Math.ceil(targetWorkgroups / decodeBaseItems)) : 1;

  const tables = new Uint32Array(Math.max(tableWords, 1));
  const prefill: number[] = [];
  const decode: number[] = [];
  const reduce: number[] = [];
  let partialFloats = 0;
  let splitRows = 0;
  let tableOffset = 0;
  for (const s of seqs) {
    const blocks = Math.ceil(s.kvLen / blockSize);
    for (let b = 0; b < blocks; b++) tables[tableOffset + b] = s.blockTable[b]!;
    const firstPos = s.kvLen - s.qLen;
    if (s.qLen <= decodeMaxRows) {
      for (let j = 0; j < s.qLen; j++) {
        const pos = firstPos + j;
        const keys = pos + 1;
        let splits = Math.min(maxSplits, wantedSplits, Math.ceil(keys / minKeysPerSplit));
        // whole tiles of 64 keys per split, then as many splits as that needs
        const chunk = Math.ceil(Math.ceil(keys / Math.max(splits, 1)) / 64) * 64;
        splits = Math.ceil(keys / chunk);
        if (splits > 1) splitRows++;
        if (dims && splits === 1) {
          // the dims kernel writes a row it was not asked to split straight to out
          for (let g = 0; g < decodeHeadGroups; g++) decode.push(s.qStart + j, 1, pos, tableOffset, g * decodeHeads, 0, keys, NO_PARTIAL);
          continue;
        }
        if (partialsPerItem > 0) {
          // every item writes its partials (one per lane, or one), all merged by one reduce item
          for (let g = 0; g < decodeHeadGroups; g++) {
            reduce.push(s.qStart + j, g * decodeHeads, splits * partialsPerItem, partialFloats);
            for (let k = 0; k < splits; k++) {
              decode.push(s.qStart + j, 1, pos, tableOffset, g * decodeHeads, k * chunk, Math.min(keys, (k + 1) * chunk), partialFloats);
              partialFloats += partialsPerItem * decodeHeads * (headDim + 2);
            }
          }
          continue;
        }
        for (let g = 0; g < headGroups; g++) {
          if (splits === 1) {
            decode.push(s.qStart + j, 1, pos, tableOffset, g * heads, 0, keys, NO_PARTIAL);
            continue;
          }
          reduce.push(s.qStart + j, g * heads, splits, partialFloats);
          for (let k = 0; k < splits; k++) {
            decode.push(s.qStart + j, 1, pos, tableOffset, g * heads, k * chunk, Math.min(keys, (k + 1) * chunk), partialFloats);
            partialFloats += heads * (headDim + 2);
          }
        }
      }
    } else {
      for (let j0 = 0; j0 < s.qLen; j0 += prefillRows) {
        const n = Math.min(prefillRows, s.qLen - j0);
        const pos0 = firstPos + j0;
        for (let g = 0; g < headGroups; g++) prefill.push(s.qStart + j0, n, pos0, tableOffset, g * heads, 0, pos0 + n, NO_PARTIAL);
      }
    }
    tableOffset += blocks;
  }

  const batch = o.reuse && !o.reuse.isDestroyed && o.reuse.runtime === rt ? o.reuse : new AttentionBatch(rt);
  batch.rows = rows;
  batch.blockSize = blockSize;
  batch.nHeads = nHeads;
  batch.nKvHeads = nKvHeads;
  batch.headDim = headDim;
  batch.prefill = { rows: prefillRows, heads, items: prefill.length / WORK_ITEM_WORDS };
  batch.decode = { rows: 1, heads: decodeHeads, items: decode.length / WORK_ITEM_WORDS };
  batch.reduceItems = reduce.length / REDUCE_ITEM_WORDS;
  batch.splitRows = splitRows;
  batch.decodeLanes = decodeLanes;
  batch.decodeDims = dims;
  rt.write(batch.blockTables.ensure(rt, tables.length), tables);
  if (prefill.length) rt.write(batch.prefillItems.ensure(rt, prefill.length), Uint32Array.from(prefill));
  if (decode.length) rt.write(batch.decodeItems.ensure(rt, decode.length), Uint32Array.from(decode));
  if (reduce.length) rt.write(batch.reduceItemBuffer.ensure(rt, reduce.length), Uint32Array.from(reduce));
  if (partialFloats) batch.partials.ensure(rt, partialFloats);
  return batch;
}
