/**
 * Decode attention benchmark: one query token per sequence against a paged cache of
 * `context` tokens, for 1 and 16 sequences, reporting the effective bandwidth of the KV
 * read (K and V bytes of every visible token / median time). A benchmark, not a test.
 *
 * Run: npm run bench:attention  (prints a table, writes
 * bench/results/attention.json).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { attention, prepareAttentionBatch } from '../src/kernels/attention.js';
import { createKvCache, type KvDType } from '../src/kernels/kv-write.js';
import { KernelRuntime, f32ToF16Bits } from '../src/kernels/runtime.js';
import { DTYPE_BYTES } from '../src/kernels/tensor.js';

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

export interface AttentionBenchRow {
  context: number;
  seqs: number;
  dtype: KvDType;
  /** Workgroups of the decode dispatch (after split-K). */
  workgroups: number;
  medianMs: number;
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
        rows.push({ context, seqs, dtype, workgroups: 0, medianMs: NaN, kvBytes, gbPerS: NaN, skipped: 'cache over one binding' });
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
      const times: number[] = [];
      for (let i = 0; i < warmup + repeats; i++) {
        const t0 = performance.now();
        const rec = rt.recorder();
        attention(rt, rec, batch, { q, kCache: cache.k, vCache: cache.v, out, nHeads, nKvHeads, headDim, blockSize });
        await rec.submit();
        await rt.sync();
        if (i >= warmup) times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const medianMs = times[Math.floor(times.length / 2)]!;
      rows.push({ context, seqs, dtype, workgroups: batch.decode.items, medianMs, kvBytes, gbPerS: kvBytes / (medianMs * 1e6) });
      batch.destroy();
      for (const t of [cache.k, cache.v, q, out]) rt.destroyBuffer(t.buffer);
    }
  }
  return rows;
}

function printTable(adapter: string, rows: AttentionBenchRow[]): void {
  console.log(`decode attention on ${adapter}`);
  console.log('context  seqs  dtype  workgroups  median ms   KV MiB    GB/s');
  for (const r of rows) {
    if (r.skipped) {
      console.log(`${String(r.context).padStart(7)}  ${String(r.seqs).padStart(4)}  ${r.dtype.padEnd(5)}  skipped: ${r.skipped}`);
      continue;
    }
    console.log(
      `${String(r.context).padStart(7)}  ${String(r.seqs).padStart(4)}  ${r.dtype.padEnd(5)}  ${String(r.workgroups).padStart(10)}  ` +
        `${r.medianMs.toFixed(2).padStart(9)}  ${(r.kvBytes / 2 ** 20).toFixed(1).padStart(7)}  ${r.gbPerS.toFixed(2).padStart(6)}`,
    );
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rt = await KernelRuntime.create();
  try {
    const rows = [...(await benchAttentionDecode(rt, { dtype: rt.preferredDType }))];
    if (rt.preferredDType === 'f16') rows.push(...(await benchAttentionDecode(rt, { dtype: 'f32' })));
    printTable(rt.adapterName, rows);
    const file = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'attention.json');
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify({ adapter: rt.adapterName, date: new Date().toISOString(), rows }, null, 2));
    console.log(`wrote ${file}`);
  } finally {
    rt.destroy();
  }
}
