/**
 * Decode attention benchmark: one query token per sequence against a paged cache of
 * `context` tokens, for 1 and 16 sequences, on two layer shapes (a Qwen2.5-1.5B-like layer
 * and the generated 100M model's), reporting the effective bandwidth of the KV read (K and
 * V bytes of every visible token / median time) against the read ceiling measured in the
 * same run. A benchmark, not a test.
 *
 * Run: npm run bench:attention  (prints a table, writes bench/results/attention.json and
 * the "attention" section of bench/RESULTS.md).
 */
import { fileURLToPath } from 'node:url';
import { attention, prepareAttentionBatch } from '../src/kernels/attention.js';
import { createKvCache, type KvDType } from '../src/kernels/kv-write.js';
import { KernelRuntime, f32ToF16Bits } from '../src/kernels/runtime.js';
import { DTYPE_BYTES } from '../src/kernels/tensor.js';
import { measureCeilings } from './ceilings.js';
import { formatTable, markdownTable, runStamp, timeGpu, updateResultsSection, writeResultsJson, type Cell } from './report.js';

export interface AttentionBenchOptions {
  contexts?: number[];
  seqCounts?: number[];
  nHeads?: number;
  nKvHeads?: number;
  headDim?: number;
  blockSize?: number;
  dtype?: KvDType;
  warmup?: number;
  repeats?: number;
}

/** A layer shape the benchmark runs, with the name its table rows carry. */
export interface AttentionLayer {
  name: string;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  contexts: number[];
}

const LAYERS: readonly AttentionLayer[] = [
  { name: 'Qwen2.5-1.5B-like (12 q / 2 kv heads of 128)', nHeads: 12, nKvHeads: 2, headDim: 128, contexts: [512, 2048, 8192] },
  { name: '100M preset (12 q / 4 kv heads of 64)', nHeads: 12, nKvHeads: 4, headDim: 64, contexts: [192, 1024] },
];

export interface AttentionBenchRow {
  context: number;
  seqs: number;
  dtype: KvDType;
  /** Work items of the decode dispatch (after split-K). */
  workgroups: number;
  medianMs: number;
  /** (max - min) / median of the samples. */
  spread: number;
  kvBytes: number;
  gbPerS: number;
  /** Set when the shape was not run (e.g. the cache would not fit one binding). */
  skipped?: string;
}

/** Runs decode attention over each (context, seqs) pair and returns one row per pair. */
export async function benchAttentionDecode(rt: KernelRuntime, o: AttentionBenchOptions = {}): Promise<AttentionBenchRow[]> {
  const contexts = o.contexts ?? [512, 2048, 8192];
  const seqCounts = o.seqCounts ?? [1, 16];
  // defaults: a Qwen2.5-1.5B-like layer (12 query heads, 2 kv heads, head dim 128)
  const nHeads = o.nHeads ?? 12;
  const nKvHeads = o.nKvHeads ?? 2;
  const headDim = o.headDim ?? 128;
  const blockSize = o.blockSize ?? 16;
  const dtype = o.dtype ?? rt.preferredDType;
  const warmup = o.warmup ?? 2;
  const repeats = o.repeats ?? 7;
  const rows: AttentionBenchRow[] = [];
  for (const seqs of seqCounts) {
    for (const context of contexts) {
      const blocksPerSeq = Math.ceil(context / blockSize);
      const numBlocks = blocksPerSeq * seqs;
      const kvBytes = 2 * seqs * context * nKvHeads * headDim * DTYPE_BYTES[dtype];
      if (kvBytes / 2 > rt.maxBindingBytes) {
        rows.push({
          context,
          seqs,
          dtype,
          workgroups: 0,
          medianMs: NaN,
          spread: NaN,
          kvBytes,
          gbPerS: NaN,
          skipped: 'cache over one binding',
        });
        continue;
      }
      const cache = createKvCache(rt, { numBlocks, blockSize, nKvHeads, headDim, dtype });
      // fill with a small non-zero pattern (values do not change the work done)
      const fill = new Float32Array(cache.k.length).map((_, i) => ((i % 13) - 6) / 16);
      for (const t of [cache.k, cache.v]) rt.write(t, dtype === 'f16' ? f32ToF16Bits(fill) : fill);
      // interleaved block ids so that each sequence's blocks are scattered
      const batch = prepareAttentionBatch(rt, {
        seqs: Array.from({ length: seqs }, (_, s) => ({
          qStart: s,
          qLen: 1,
          kvLen: context,
          blockTable: Array.from({ length: blocksPerSeq }, (_, b) => b * seqs + s),
        })),
        blockSize,
        nHeads,
        nKvHeads,
        headDim,
      });
      const q = rt.upload('f32', new Float32Array(seqs * nHeads * headDim).fill(0.01));
      const out = rt.tensor('f32', seqs * nHeads * headDim);
      const t = await timeGpu(
        rt,
        (rec) => attention(rt, rec, batch, { q, kCache: cache.k, vCache: cache.v, out, nHeads, nKvHeads, headDim, blockSize }),
        { warmup, repeats },
      );
      rows.push({
        context,
        seqs,
        dtype,
        workgroups: batch.decode.items,
        medianMs: t.medianMs,
        spread: t.spread,
        kvBytes,
        gbPerS: kvBytes / (t.medianMs * 1e6),
      });
      batch.destroy();
      for (const t of [cache.k, cache.v, q, out]) rt.destroyBuffer(t.buffer);
    }
  }
  return rows;
}

const HEADERS = ['layer', 'context', 'seqs', 'cache dtype', 'work items', 'median ms', 'spread', 'KV MiB', 'GB/s', 'of read BW'];

function tableRows(layer: AttentionLayer, rows: readonly AttentionBenchRow[], readGBps: number): Cell[][] {
  return rows.map((r) => [
    layer.name,
    r.context,
    r.seqs,
    r.dtype,
    r.skipped ? `skipped: ${r.skipped}` : r.workgroups,
    r.medianMs,
    r.skipped ? undefined : `${Math.round(r.spread * 100)}%`,
    r.kvBytes / 2 ** 20,
    r.gbPerS,
    r.skipped ? undefined : `${Math.round((100 * r.gbPerS) / readGBps)}%`,
  ]);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rt = await KernelRuntime.create();
  try {
    const ceilings = await measureCeilings(rt);
    const dtypes: KvDType[] = rt.preferredDType === 'f16' ? ['f16', 'f32'] : ['f32'];
    const results: { layer: AttentionLayer; rows: AttentionBenchRow[] }[] = [];
    for (const layer of LAYERS) {
      for (const dtype of dtypes) results.push({ layer, rows: await benchAttentionDecode(rt, { ...layer, dtype }) });
    }
    const table = results.flatMap(({ layer, rows }) => tableRows(layer, rows, ceilings.readGBps));
    console.log(`decode attention on ${rt.adapterName}; read ceiling ${ceilings.readGBps.toFixed(1)} GB/s`);
    console.log(formatTable(HEADERS, table));
    const { commit, date } = runStamp();
    console.log(`wrote ${writeResultsJson('attention', { adapter: rt.adapterName, date, commit, readGBps: ceilings.readGBps, results })}`);
    updateResultsSection(
      'attention',
      `## Decode attention\n\nAdapter: ${rt.adapterName}. Date: ${date}, commit ${commit}. Command: \`npm run bench:attention\`.\n` +
        `One query token per sequence against a paged cache (blocks of 16, each sequence's blocks scattered), the kernel the adapter's profile picks; ` +
        `timing: GPU timestamp queries where the device has them, median of 7 samples after 2 warm-ups; GB/s = K and V bytes of every visible token / median time; ` +
        `read ceiling ${ceilings.readGBps.toFixed(1)} GB/s measured at the start of the same run.\n\n` +
        markdownTable(HEADERS, table),
    );
  } finally {
    rt.destroy();
  }
}
