/**
 * bench:kernels' rows for the rest of the kernel library: norms, activations, embedding
 * gather, RoPE, the fused RoPE + KV-cache write, the multi-LoRA shrink and expand, the
 * mixture-of-experts routing and expert matmuls (Qwen3-30B-A3B's shapes), prefill
 * and decode attention over the paged cache (also with Gemma 2's logit soft-capping),
 * final-logit soft-capping and GPU sampling, each on the shape it has in a Llama-2-7B-sized
 * layer (hidden 4096, 32 heads of 128, 8 kv heads, intermediate 11008),
 * with a batch of 128 rows where the kernel runs per token. Bytes count what the kernel
 * must move at least (inputs read once, outputs written once); rates are judged against
 * the read ceiling, except prefill attention, whose 2 x 2 x heads x headDim flops per
 * (query, key) pair make it compute-bound, and the LoRA shrink, judged against the FMA
 * ceiling.
 */
import { activation, gatedActivation } from '../src/kernels/activation.js';
import { attention, prepareAttentionBatch } from '../src/kernels/attention.js';
import { embedding, prepareEmbeddingTable, destroyEmbeddingTable } from '../src/kernels/embedding.js';
import { createKvCache } from '../src/kernels/kv-write.js';
import { layerNorm } from '../src/kernels/layernorm.js';
import { loraExpand, loraShrink } from '../src/kernels/lora.js';
import { moeGroup } from '../src/kernels/moe-group.js';
import { moeMatmul, moeMatmulGrouped, prepareMoeExperts } from '../src/kernels/moe-matmul.js';
import { moeRoute } from '../src/kernels/moe-route.js';
import { sigmoidGatedAdd } from '../src/kernels/sigmoid-gated-add.js';
import { moeWeightedSum } from '../src/kernels/moe-sum.js';
import type { Recorder } from '../src/kernels/recorder.js';
import { rmsNorm } from '../src/kernels/rmsnorm.js';
import { rope, ropeInvFreq } from '../src/kernels/rope.js';
import { softcap } from '../src/kernels/softcap.js';
import { ropeKvWrite } from '../src/kernels/rope-kv-write.js';
import { f32ToF16Bits, type KernelRuntime } from '../src/kernels/runtime.js';
import { GREEDY_SAMPLING_ROW, createSampleOutput, prepareSampling, sample, type SamplingRow } from '../src/kernels/sampling.js';
import { DTYPE_BYTES, type GpuTensor } from '../src/kernels/tensor.js';
import type { Ceilings } from './ceilings.js';
import type { KernelBenchRow } from './kernels.js';
import { timeGpu, type TimeOptions } from './report.js';

const ROWS = 128;
const HIDDEN = 4096;
const HEADS = 32;
const KV_HEADS = 8;
const HEAD_DIM = 128;
const INTERMEDIATE = 11008;
const BLOCK = 16;
const LORA_RANK = 16;
const LORA_SLOTS = 4;

/** What one library kernel's bench needs from its set-up. */
interface LibraryCase {
  kernel: string;
  shape: string;
  dtype: string;
  bytes: number;
  flops: number;
  bound: 'bandwidth' | 'compute';
  record: (rec: Recorder) => void;
  /** Frees what the case allocated. */
  free: () => void;
}

/** Deterministic pseudo-random floats in [-scale / 2, scale / 2) (a 32-bit LCG): inputs that are not all alike, the same every run. */
export function pseudoRandom(n: number, seed: number, scale = 0.1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * scale;
  }
  return a;
}

function freeAll(rt: KernelRuntime, ...tensors: GpuTensor[]): () => void {
  return () => {
    for (const t of tensors) rt.destroyBuffer(t.buffer);
  };
}

/** positions 0..rows-1 and cache slots that scatter the rows over the cache's blocks. */
function positionsAndSlots(rt: KernelRuntime, rows: number, numBlocks: number): { positions: GpuTensor; slots: GpuTensor } {
  const positions = rt.upload(
    'u32',
    Uint32Array.from({ length: rows }, (_, i) => i),
  );
  const slots = rt.upload(
    'u32',
    Uint32Array.from({ length: rows }, (_, i) => ((Math.floor(i / BLOCK) * 7) % numBlocks) * BLOCK + (i % BLOCK)),
  );
  return { positions, slots };
}

function normCases(rt: KernelRuntime): LibraryCase[] {
  const n = ROWS * HIDDEN;
  const make = (kernel: string, record: (x: GpuTensor, w: GpuTensor, b: GpuTensor, out: GpuTensor, rec: Recorder) => void): LibraryCase => {
    const x = rt.upload('f32', pseudoRandom(n, 1, 2));
    const w = rt.upload('f32', pseudoRandom(HIDDEN, 2, 1));
    const b = rt.upload('f32', pseudoRandom(HIDDEN, 3, 1));
    const out = rt.tensor('f32', n);
    return {
      kernel,
      shape: `${ROWS}x${HIDDEN}`,
      dtype: 'f32',
      bytes: 2 * n * 4 + HIDDEN * 4,
      flops: 4 * n,
      bound: 'bandwidth',
      record: (rec) => record(x, w, b, out, rec),
      free: freeAll(rt, x, w, b, out),
    };
  };
  return [
    make('rmsnorm', (x, weight, _b, out, rec) => rmsNorm(rt, rec, { x, weight, out, rows: ROWS, dim: HIDDEN, eps: 1e-6 })),
    make('layernorm', (x, weight, bias, out, rec) => layerNorm(rt, rec, { x, weight, bias, out, rows: ROWS, dim: HIDDEN, eps: 1e-5 })),
  ];
}

function activationCases(rt: KernelRuntime): LibraryCase[] {
  const gated = (kernel: string, act: 'silu' | 'gelu_tanh'): LibraryCase => {
    const x = rt.upload('f32', pseudoRandom(ROWS * 2 * INTERMEDIATE, 4, 4));
    const out = rt.tensor('f32', ROWS * INTERMEDIATE);
    return {
      kernel,
      shape: `${ROWS}x${INTERMEDIATE}`,
      dtype: 'f32',
      bytes: 3 * ROWS * INTERMEDIATE * 4,
      flops: 6 * ROWS * INTERMEDIATE,
      bound: 'bandwidth',
      record: (rec) => gatedActivation(rt, rec, { x, out, rows: ROWS, inner: INTERMEDIATE, activation: act }),
      free: freeAll(rt, x, out),
    };
  };
  const x = rt.upload('f32', pseudoRandom(ROWS * INTERMEDIATE, 5, 4));
  const out = rt.tensor('f32', ROWS * INTERMEDIATE);
  return [
    gated('silu-and-mul', 'silu'),
    gated('gelu-tanh-and-mul', 'gelu_tanh'),
    {
      kernel: 'gelu-tanh',
      shape: `${ROWS}x${INTERMEDIATE}`,
      dtype: 'f32',
      bytes: 2 * ROWS * INTERMEDIATE * 4,
      flops: 8 * ROWS * INTERMEDIATE,
      bound: 'bandwidth',
      record: (rec) => activation(rt, rec, { x, out, n: ROWS * INTERMEDIATE, activation: 'gelu_tanh' }),
      free: freeAll(rt, x, out),
    },
  ];
}

function embeddingCase(rt: KernelRuntime): LibraryCase {
  const vocab = 4096;
  const dtype = rt.hasF16 ? 'f16' : 'f32';
  const data = pseudoRandom(vocab * HIDDEN, 6, 1);
  const table = prepareEmbeddingTable(rt, { data: dtype === 'f16' ? f32ToF16Bits(data) : data, vocab, dim: HIDDEN, dtype });
  const ids = rt.upload(
    'u32',
    Uint32Array.from({ length: ROWS }, (_, i) => (i * 2654435761) % vocab),
  );
  const out = rt.tensor('f32', ROWS * HIDDEN);
  return {
    kernel: 'embedding',
    shape: `${ROWS} of ${vocab}x${HIDDEN}`,
    dtype,
    bytes: ROWS * HIDDEN * (DTYPE_BYTES[dtype] + 4) + ROWS * 4,
    flops: 0,
    bound: 'bandwidth',
    record: (rec) => embedding(rt, rec, { ids, out, rows: ROWS, dim: HIDDEN, parts: table.parts }),
    free: () => {
      destroyEmbeddingTable(rt, table);
      freeAll(rt, ids, out)();
    },
  };
}

function ropeCases(rt: KernelRuntime): LibraryCase[] {
  const invFreq = rt.upload('f32', ropeInvFreq({ rotaryDim: HEAD_DIM, theta: 10000 }));
  const numBlocks = ROWS / BLOCK;
  const { positions, slots } = positionsAndSlots(rt, ROWS, numBlocks);
  const q = rt.upload('f32', pseudoRandom(ROWS * HEADS * HEAD_DIM, 7, 1));
  const qkvWidth = (HEADS + 2 * KV_HEADS) * HEAD_DIM;
  const qkv = rt.upload('f32', pseudoRandom(ROWS * qkvWidth, 8, 1));
  const cache = createKvCache(rt, { numBlocks, blockSize: BLOCK, nKvHeads: KV_HEADS, headDim: HEAD_DIM, dtype: rt.preferredDType });
  const kvBytes = DTYPE_BYTES[rt.preferredDType];
  const qkBytes = ROWS * (HEADS + KV_HEADS) * HEAD_DIM * 4;
  return [
    {
      kernel: 'rope',
      shape: `${ROWS}x${HEADS}x${HEAD_DIM}`,
      dtype: 'f32',
      bytes: 2 * ROWS * HEADS * HEAD_DIM * 4,
      flops: 3 * ROWS * HEADS * HEAD_DIM,
      bound: 'bandwidth',
      record: (rec) => rope(rt, rec, { x: q, positions, invFreq, rows: ROWS, nHeads: HEADS, headDim: HEAD_DIM, layout: 'half' }),
      free: freeAll(rt, q),
    },
    {
      kernel: 'rope+kv-write',
      shape: `${ROWS}x(${HEADS}+2x${KV_HEADS})x${HEAD_DIM}`,
      dtype: `f32, cache ${rt.preferredDType}`,
      // q and k rotated in place (read + write), v read, k and v written to the cache
      bytes: 2 * qkBytes + ROWS * KV_HEADS * HEAD_DIM * 4 + 2 * ROWS * KV_HEADS * HEAD_DIM * kvBytes,
      flops: 3 * ROWS * (HEADS + KV_HEADS) * HEAD_DIM,
      bound: 'bandwidth',
      record: (rec) =>
        ropeKvWrite(rt, rec, {
          qkv,
          positions,
          invFreq,
          slots,
          kCache: cache.k,
          vCache: cache.v,
          rows: ROWS,
          nHeads: HEADS,
          nKvHeads: KV_HEADS,
          headDim: HEAD_DIM,
          layout: 'half',
          blockSize: BLOCK,
        }),
      free: freeAll(rt, qkv, cache.k, cache.v, invFreq, positions, slots),
    },
  ];
}

/**
 * One prefill sequence of `tokens` (causal), or `seqs` decode rows over `context` cached keys
 * each; `softcap` > 0 caps the scores (Gemma 2's attention logit soft-capping).
 */
function attentionCase(rt: KernelRuntime, mode: 'prefill' | 'decode', seqs: number, tokens: number, softcap = 0): LibraryCase {
  const blocksPerSeq = Math.ceil(tokens / BLOCK);
  const numBlocks = blocksPerSeq * seqs;
  const dtype = rt.preferredDType;
  const cache = createKvCache(rt, { numBlocks, blockSize: BLOCK, nKvHeads: KV_HEADS, headDim: HEAD_DIM, dtype });
  const fill = pseudoRandom(cache.k.length, 9, 1);
  for (const t of [cache.k, cache.v]) rt.write(t, dtype === 'f16' ? f32ToF16Bits(fill) : fill);
  const qRows = mode === 'prefill' ? tokens : seqs;
  const batch = prepareAttentionBatch(rt, {
    seqs: Array.from({ length: seqs }, (_, s) => ({
      qStart: mode === 'prefill' ? 0 : s,
      qLen: mode === 'prefill' ? tokens : 1,
      kvLen: tokens,
      // interleaved block ids: each sequence's blocks are scattered, as in a busy cache
      blockTable: Array.from({ length: blocksPerSeq }, (_, b) => b * seqs + s),
    })),
    blockSize: BLOCK,
    nHeads: HEADS,
    nKvHeads: KV_HEADS,
    headDim: HEAD_DIM,
  });
  const q = rt.upload('f32', pseudoRandom(qRows * HEADS * HEAD_DIM, 10, 1));
  const out = rt.tensor('f32', qRows * HEADS * HEAD_DIM);
  // (query, key) pairs each query head scores: causal for prefill
  const pairs = mode === 'prefill' ? (tokens * (tokens + 1)) / 2 : seqs * tokens;
  const kvBytes = 2 * seqs * tokens * KV_HEADS * HEAD_DIM * DTYPE_BYTES[dtype];
  return {
    kernel: `attention ${mode}${softcap > 0 ? `, softcap ${softcap}` : ''}`,
    shape: mode === 'prefill' ? `1 seq x ${tokens} tokens` : `${seqs} seq${seqs === 1 ? '' : 's'} x ${tokens} keys`,
    dtype: `cache ${dtype}`,
    bytes: kvBytes + 2 * qRows * HEADS * HEAD_DIM * 4,
    flops: 4 * HEADS * HEAD_DIM * pairs,
    bound: mode === 'prefill' ? 'compute' : 'bandwidth',
    record: (rec) =>
      attention(rt, rec, batch, {
        q,
        kCache: cache.k,
        vCache: cache.v,
        out,
        nHeads: HEADS,
        nKvHeads: KV_HEADS,
        headDim: HEAD_DIM,
        blockSize: BLOCK,
        softcap,
      }),
    free: () => {
      batch.destroy();
      freeAll(rt, q, out, cache.k, cache.v)();
    },
  };
}

/**
 * Logits shaped like a language model's: a normal tail (sd 2.5) and 20 tokens per row raised
 * 6-12 above it, so that top-k / top-p keep a few to a few hundred tokens as they do on real
 * text. (Uniform noise, which the sampling rows used before, leaves a quarter of the
 * vocabulary in the top radix bin, which no model output does.)
 */
function lmLikeLogits(rows: number, vocab: number, seed: number): Float32Array {
  const u = pseudoRandom(2 * rows * vocab + 2 * rows * 20, seed, 2);
  const next = (() => {
    let i = 0;
    return () => u[i++]! / 2 + 0.5;
  })();
  const a = new Float32Array(rows * vocab);
  for (let i = 0; i < a.length; i++) a[i] = Math.sqrt(-2 * Math.log(Math.max(next(), 1e-9))) * Math.cos(2 * Math.PI * next()) * 2.5;
  for (let r = 0; r < rows; r++) for (let j = 0; j < 20; j++) a[r * vocab + Math.floor(next() * vocab)]! += 6 + 6 * next();
  return a;
}

/** Final-logit soft-capping in place over a batch of logits (Gemma 2's vocabulary of 256000, cap 30). */
function softcapCase(rt: KernelRuntime): LibraryCase {
  const rows = 16;
  const vocab = 256_000;
  const logits = rt.upload('f32', lmLikeLogits(rows, vocab, 18));
  return {
    kernel: 'softcap',
    shape: `${rows}x${vocab}, cap 30`,
    dtype: 'f32',
    bytes: 2 * rows * vocab * 4,
    flops: 0,
    bound: 'bandwidth',
    record: (rec) => softcap(rt, rec, { x: logits, count: rows * vocab, cap: 30 }),
    free: freeAll(rt, logits),
  };
}

function samplingCase(rt: KernelRuntime, name: string, row: Partial<SamplingRow>): LibraryCase {
  const rows = 16;
  const vocab = 32000;
  const logits = rt.upload('f32', lmLikeLogits(rows, vocab, 11));
  const batch = prepareSampling(
    rt,
    Array.from({ length: rows }, (_, i) => ({ ...GREEDY_SAMPLING_ROW, ...row, seed: i + 1, position: 100 + i })),
  );
  const out = createSampleOutput(rt, rows);
  return {
    kernel: `sample ${name}`,
    shape: `${rows}x${vocab}`,
    dtype: 'f32',
    bytes: rows * vocab * 4,
    flops: 0,
    bound: 'bandwidth',
    record: (rec) => sample(rt, rec, { logits, vocab, batch, out }),
    free: () => {
      rt.pool.release(batch.buffer);
      freeAll(rt, logits)();
      rt.destroyBuffer(out.buffer);
    },
  };
}

/**
 * The LoRA delta of the fused QKV projection (q 4096 | k 1024 | v 1024, one A and B each):
 * shrink with the layer's RMSNorm folded in (as the engine runs it, on the residual stream),
 * then expand into the projection's output, every row on one of LORA_SLOTS adapters. Bytes
 * count each used slot's A or B once (rows re-read it from cache). Shrink's 2 * R flops per
 * byte of x and A make it compute-bound by that count; expand reads and writes out.
 */
function loraCases(rt: KernelRuntime): LibraryCase[] {
  const parts = 3;
  const R = parts * LORA_RANK;
  const N = (HEADS + 2 * KV_HEADS) * HEAD_DIM;
  const rowSlots = rt.upload(
    'u32',
    Uint32Array.from({ length: ROWS }, (_, i) => i % LORA_SLOTS),
  );
  const x = rt.upload('f32', pseudoRandom(ROWS * HIDDEN, 12, 2));
  const norm = rt.upload('f32', pseudoRandom(HIDDEN, 13, 1));
  const a = rt.upload('f32', pseudoRandom(LORA_SLOTS * R * HIDDEN, 14, 0.1));
  const t = rt.upload('f32', pseudoRandom(ROWS * R, 15, 1));
  const b = rt.upload('f32', pseudoRandom(LORA_SLOTS * N * LORA_RANK, 16, 0.1));
  const out = rt.upload('f32', pseudoRandom(ROWS * N, 17, 1));
  return [
    {
      kernel: 'lora shrink',
      shape: `${ROWS}x${HIDDEN} -> R ${parts}x${LORA_RANK}, ${LORA_SLOTS} slots`,
      dtype: 'f32',
      bytes: (ROWS * HIDDEN + LORA_SLOTS * R * HIDDEN + ROWS * R + HIDDEN + ROWS) * 4,
      flops: 2 * ROWS * R * HIDDEN,
      bound: 'compute',
      record: (rec) =>
        loraShrink(rt, rec, {
          x,
          a,
          rowSlots,
          t,
          rows: ROWS,
          K: HIDDEN,
          R,
          slots: LORA_SLOTS,
          normX: { weight: norm, eps: 1e-6, onePlus: false },
        }),
      free: freeAll(rt, x, norm, a),
    },
    {
      kernel: 'lora expand',
      shape: `${ROWS}x${N} (${HEADS * HEAD_DIM}|${KV_HEADS * HEAD_DIM}|${KV_HEADS * HEAD_DIM}), rank ${LORA_RANK}, ${LORA_SLOTS} slots`,
      dtype: 'f32',
      bytes: (ROWS * R + LORA_SLOTS * N * LORA_RANK + 2 * ROWS * N + ROWS) * 4,
      flops: 2 * ROWS * N * LORA_RANK,
      bound: 'bandwidth',
      record: (rec) =>
        loraExpand(rt, rec, {
          t,
          b,
          rowSlots,
          out,
          rows: ROWS,
          N,
          rank: LORA_RANK,
          slots: LORA_SLOTS,
          segmentStarts: [HEADS * HEAD_DIM, (HEADS + KV_HEADS) * HEAD_DIM],
        }),
      free: freeAll(rt, t, b, out, rowSlots),
    },
  ];
}

// Mixture of experts at Qwen3-30B-A3B's layer shapes (hidden 2048, experts of 768, 8 per
// token), with 16 experts instead of 128 so that the weights fit lavapipe's memory quickly
const MOE_HIDDEN = 2048;
const MOE_INNER = 768;
const MOE_EXPERTS = 16;
const MOE_TOP_K = 8;

/**
 * The expert matmuls of `rows` tokens (f16 experts): gate/up (expand) and the weighted down
 * projection (combine), one matmul per pair and, for several tokens, grouped by expert
 * (moe-group included, and moe-sum for the down projection). Bytes count each distinct
 * expert's weights once (what the matmuls must read at least), so the rate falls where
 * pairs sharing an expert re-read it.
 */
function moeCases(rt: KernelRuntime, rows: number): LibraryCase[] {
  const pairs = rows * MOE_TOP_K;
  // each row's experts: 8 distinct ones, spread over all 16 by the rows together
  const chosen = Uint32Array.from({ length: pairs }, (_, i) => (Math.floor(i / MOE_TOP_K) * 3 + (i % MOE_TOP_K) * 2) % MOE_EXPERTS);
  const distinct = new Set(chosen).size;
  const experts = (N: number, K: number, seed: number) =>
    prepareMoeExperts(rt, {
      experts: MOE_EXPERTS,
      N,
      K,
      dtype: 'f16',
      expertData: (e) => f32ToF16Bits(pseudoRandom(N * K, seed + e, 0.1)),
      label: 'bench-moe',
    });
  const gateUp = experts(2 * MOE_INNER, MOE_HIDDEN, 100);
  const down = experts(MOE_HIDDEN, MOE_INNER, 200);
  const ids = rt.upload('u32', chosen);
  const weights = rt.upload('f32', pseudoRandom(pairs, 21, 1));
  const x = rt.upload('f32', pseudoRandom(rows * MOE_HIDDEN, 22, 2));
  const gu = rt.tensor('f32', pairs * 2 * MOE_INNER);
  const act = rt.upload('f32', pseudoRandom(pairs * MOE_INNER, 23, 2));
  const out = rt.upload('f32', pseudoRandom(rows * MOE_HIDDEN, 24, 1));
  const shape = `${rows} rows x top-${MOE_TOP_K} of ${MOE_EXPERTS} experts (${distinct} read)`;
  const cases: LibraryCase[] = [
    {
      kernel: 'moe expand (gate/up)',
      shape: `${shape}, ${2 * MOE_INNER}x${MOE_HIDDEN}`,
      dtype: 'f16',
      bytes: distinct * 2 * MOE_INNER * MOE_HIDDEN * 2 + (rows * MOE_HIDDEN + pairs * 2 * MOE_INNER + pairs) * 4,
      flops: 2 * pairs * 2 * MOE_INNER * MOE_HIDDEN,
      bound: 'bandwidth',
      record: (rec) => moeMatmul(rt, rec, { mode: 'expand', x, weight: gateUp, ids, out: gu, rows, topK: MOE_TOP_K }),
      free: () => gateUp.destroy(),
    },
    {
      kernel: 'moe combine (down)',
      shape: `${shape}, ${MOE_HIDDEN}x${MOE_INNER}`,
      dtype: 'f16',
      bytes: distinct * MOE_HIDDEN * MOE_INNER * 2 + (pairs * MOE_INNER + 2 * rows * MOE_HIDDEN + 2 * pairs) * 4,
      flops: 2 * pairs * MOE_HIDDEN * MOE_INNER,
      bound: 'bandwidth',
      record: (rec) =>
        moeMatmul(rt, rec, {
          mode: 'combine',
          x: act,
          weight: down,
          ids,
          routeWeights: weights,
          out,
          rows,
          topK: MOE_TOP_K,
          accumulate: true,
        }),
      free: () => {
        down.destroy();
        freeAll(rt, ids, weights, x, gu, act, out)();
      },
    },
  ];
  if (rows > 1) {
    // the path the engine takes at two or more pairs per expert: grouped by expert first
    const offsets = rt.tensor('u32', MOE_EXPERTS + 1);
    const order = rt.tensor('u32', pairs);
    const y = rt.tensor('f32', pairs * MOE_HIDDEN);
    const groups = { offsets, order, pairs, topK: MOE_TOP_K };
    const group = (rec: Recorder) => moeGroup(rt, rec, { ids, pairs, experts: MOE_EXPERTS, offsets, order });
    const grouped = (c: LibraryCase, record: (rec: Recorder) => void): LibraryCase => ({
      ...c,
      kernel: `${c.kernel} grouped`,
      record: (rec) => {
        group(rec);
        record(rec);
      },
    });
    const [expand, combine] = cases as [LibraryCase, LibraryCase];
    // the per-pair cases free their weights: the grouped ones run first
    cases.unshift(
      grouped({ ...expand, free: () => undefined }, (rec) =>
        moeMatmulGrouped(rt, rec, { input: 'row', x, weight: gateUp, out: gu, ...groups }),
      ),
      grouped({ ...combine, free: freeAll(rt, offsets, order, y) }, (rec) => {
        moeMatmulGrouped(rt, rec, { input: 'pair', x: act, weight: down, out: y, ...groups });
        moeWeightedSum(rt, rec, {
          y,
          ids,
          routeWeights: weights,
          out,
          rows,
          topK: MOE_TOP_K,
          N: MOE_HIDDEN,
          experts: MOE_EXPERTS,
          accumulate: true,
        });
      }),
    );
  }
  return cases;
}

/**
 * The router's top 8 for ROWS rows: Qwen3-MoE's softmax over 128 experts (renormalised), and
 * GLM-4.5's sigmoid over 160 with the choice bias, renormalised and scaled by 2.5, plus
 * DeepSeek-V3's group-limited choice (8 groups of 32 of 256 experts, 4 kept).
 */
function moeRouteCases(rt: KernelRuntime): LibraryCase[] {
  const variants = [
    { label: 'softmax', experts: 128, sigmoid: false, groups: 1, topkGroup: 1 },
    { label: 'sigmoid + bias', experts: 160, sigmoid: true, groups: 1, topkGroup: 1 },
    { label: 'sigmoid + bias, 4 of 8 groups', experts: 256, sigmoid: true, groups: 8, topkGroup: 4 },
  ];
  return variants.map((v) => {
    const logits = rt.upload('f32', pseudoRandom(ROWS * v.experts, 25, 8));
    const bias = v.sigmoid ? rt.upload('f32', pseudoRandom(v.experts, 26, 0.1)) : undefined;
    const ids = rt.tensor('u32', ROWS * MOE_TOP_K);
    const weights = rt.tensor('f32', ROWS * MOE_TOP_K);
    const sigmoid = bias ? { scoring: 'sigmoid' as const, choiceBias: bias, groups: v.groups, topkGroup: v.topkGroup, scale: 2.5 } : {};
    return {
      kernel: `moe route (${v.label})`,
      shape: `${ROWS}x${v.experts} -> top ${MOE_TOP_K}`,
      dtype: 'f32',
      bytes: (ROWS * v.experts + (bias ? v.experts : 0) + 2 * ROWS * MOE_TOP_K) * 4,
      flops: 0,
      bound: 'bandwidth',
      record: (rec) =>
        moeRoute(rt, rec, { logits, ids, weights, rows: ROWS, experts: v.experts, topK: MOE_TOP_K, normalize: true, ...sigmoid }),
      free: bias ? freeAll(rt, logits, bias, ids, weights) : freeAll(rt, logits, ids, weights),
    };
  });
}

/** Qwen2-MoE's shared-expert gate: out += sigmoid(x . gate) * y over ROWS rows of MOE_HIDDEN. */
function sigmoidGatedAddCase(rt: KernelRuntime): LibraryCase {
  const x = rt.upload('f32', pseudoRandom(ROWS * MOE_HIDDEN, 27, 1));
  const gate = rt.upload('f32', pseudoRandom(MOE_HIDDEN, 28, 0.05));
  const y = rt.upload('f32', pseudoRandom(ROWS * MOE_HIDDEN, 29, 1));
  const out = rt.upload('f32', pseudoRandom(ROWS * MOE_HIDDEN, 30, 1));
  return {
    kernel: 'sigmoid-gated add',
    shape: `${ROWS}x${MOE_HIDDEN}`,
    dtype: 'f32',
    // x and y read, out read and written, the gate once
    bytes: (4 * ROWS * MOE_HIDDEN + MOE_HIDDEN) * 4,
    flops: 4 * ROWS * MOE_HIDDEN,
    bound: 'bandwidth',
    record: (rec) => sigmoidGatedAdd(rt, rec, { x, gate, y, out, rows: ROWS, K: MOE_HIDDEN, N: MOE_HIDDEN }),
    free: freeAll(rt, x, gate, y, out),
  };
}

/** The library's cases, built one at a time (each allocates its own buffers and frees them). */
const CASES: ((rt: KernelRuntime) => LibraryCase[])[] = [
  normCases,
  activationCases,
  (rt) => [embeddingCase(rt)],
  ropeCases,
  loraCases,
  moeRouteCases,
  (rt) => [sigmoidGatedAddCase(rt)],
  (rt) => moeCases(rt, 1),
  (rt) => moeCases(rt, 16),
  (rt) => [attentionCase(rt, 'prefill', 1, 256)],
  (rt) => [attentionCase(rt, 'decode', 1, 1024)],
  (rt) => [attentionCase(rt, 'decode', 16, 1024)],
  // Gemma 2's attention cap: the same shapes, scores capped
  (rt) => [attentionCase(rt, 'prefill', 1, 256, 50)],
  (rt) => [attentionCase(rt, 'decode', 16, 1024, 50)],
  (rt) => [softcapCase(rt)],
  (rt) => [samplingCase(rt, 'greedy', {})],
  (rt) => [samplingCase(rt, 'T 0.8', { temperature: 0.8 })],
  (rt) => [samplingCase(rt, 'top-k 50, T 0.8', { temperature: 0.8, topK: 50 })],
  (rt) => [samplingCase(rt, 'top-p 0.9, T 0.8', { temperature: 0.8, topP: 0.9 })],
  (rt) => [samplingCase(rt, 'top-k 50, T 0.8, logprobs 5', { temperature: 0.8, topK: 50, logprobs: true, topLogprobs: 5 })],
  // Qwen3's generation_config defaults
  (rt) => [samplingCase(rt, 'top-k 20, top-p 0.95, T 0.6', { temperature: 0.6, topK: 20, topP: 0.95 })],
];

/** Times every library kernel; `onRow` sees each row as it is measured. */
export async function benchKernelLibrary(
  rt: KernelRuntime,
  ceil: Ceilings,
  o: TimeOptions,
  onRow: (row: KernelBenchRow) => void = () => undefined,
): Promise<KernelBenchRow[]> {
  const rows: KernelBenchRow[] = [];
  for (const build of CASES) {
    for (const c of build(rt)) {
      try {
        const t = await timeGpu(rt, c.record, o);
        const gbPerS = c.bytes / t.medianMs / 1e6;
        const gflops = c.flops / t.medianMs / 1e6;
        const row: KernelBenchRow = {
          kernel: c.kernel,
          shape: c.shape,
          dtype: c.dtype,
          medianMs: t.medianMs,
          spread: t.spread,
          bytes: c.bytes,
          flops: c.flops,
          gbPerS,
          gflops,
          ofCeiling: c.bound === 'bandwidth' ? gbPerS / ceil.readGBps : gflops / ceil.fmaGflops,
          bound: c.bound,
        };
        rows.push(row);
        onRow(row);
      } finally {
        c.free();
      }
    }
  }
  return rows;
}
