/**
 * The attention kernels' shared test table: cases (shapes, lengths, GQA, windows, splits)
 * and runCase, which lays a case out in a paged cache with shuffled block tables, runs one
 * decode kernel choice and returns the relative error against the float64 reference.
 * attention.test.ts runs the adapter's default and the tiled kernel over it,
 * attention-cpu-decode.test.ts the CPU decode kernels: separate files so the two halves run
 * in parallel (each shape is a shader that lavapipe compiles in seconds when its cache is cold).
 */
import { expect, it } from 'vitest';
import { attention, prepareAttentionBatch, type AttentionBatchOptions } from '../../src/kernels/attention.js';
import { dimsDecodeSupported } from '../../src/kernels/attention-decode-dims.js';
import { createKvCache, kvCacheIndex, kvCacheLength } from '../../src/kernels/kv-write.js';
import { f32ToF16Bits, type KernelRuntime } from '../../src/kernels/runtime.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, roundTo, TOLERANCE } from '../helpers/gpu.js';
import { attentionRef, type RefSeq } from '../reference/attention.js';

export interface Case {
  name: string;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  blockSize?: number;
  /** (qLen, kvLen) per sequence; qLen <= 4 takes the decode path by default. */
  seqs: [number, number][];
  slidingWindow?: number;
  plan?: Partial<AttentionBatchOptions>;
  /** Expect at least one split-K decode row. */
  expectSplit?: boolean;
  /** Multiplies q: large scores (hundreds) overflow exp unless every key counts in the running max. */
  qScale?: number;
  /** Logit soft-capping; runCase also checks that the cap moved the output far past the tolerance. */
  softcap?: number;
}

export const CASES: Case[] = [
  { name: 'single decode, kvLen 1', nHeads: 2, nKvHeads: 2, headDim: 64, seqs: [[1, 1]] },
  {
    name: 'decode and a prefill chunk with scores in the hundreds, GQA 2',
    nHeads: 4,
    nKvHeads: 2,
    headDim: 64,
    seqs: [
      [1, 37],
      [1, 130],
      [5, 40],
    ],
    qScale: 60,
  },
  {
    name: 'decode batch of awkward lengths, GQA 2',
    nHeads: 8,
    nKvHeads: 4,
    headDim: 128,
    seqs: [
      [1, 1],
      [1, 7],
      [1, 33],
      [1, 129],
      [1, 300],
    ],
  },
  {
    name: 'long decode 4100 (split-K), GQA 4',
    nHeads: 8,
    nKvHeads: 2,
    headDim: 128,
    seqs: [
      [1, 4100],
      [1, 17],
    ],
    expectSplit: true,
  },
  { name: 'long decode 4097 (split-K), GQA 8, hd 64', nHeads: 16, nKvHeads: 2, headDim: 64, seqs: [[1, 4097]], expectSplit: true },
  { name: 'prefill from empty cache, hd 80', nHeads: 4, nKvHeads: 4, headDim: 80, seqs: [[33, 33]] },
  { name: 'chunked prefill over cached prefix, GQA 8, hd 96', nHeads: 8, nKvHeads: 1, headDim: 96, seqs: [[70, 200]] },
  {
    name: 'mixed: decodes + prefill chunks with prior context, hd 32',
    nHeads: 4,
    nKvHeads: 2,
    headDim: 32,
    seqs: [
      [1, 40],
      [17, 17],
      [1, 1],
      [29, 129],
      [3, 66],
      [5, 5],
    ],
  },
  {
    name: 'multi-row decode (qLen 3) with forced splits',
    nHeads: 4,
    nKvHeads: 1,
    headDim: 64,
    seqs: [
      [3, 300],
      [2, 70],
    ],
    plan: { minKeysPerSplit: 64 },
    expectSplit: true,
  },
  {
    name: 'hd 6 (scalar key loads), GQA 2',
    nHeads: 2,
    nKvHeads: 1,
    headDim: 6,
    seqs: [
      [1, 70],
      [6, 21],
    ],
  },
  {
    name: 'hd 8, GQA 1',
    nHeads: 3,
    nKvHeads: 3,
    headDim: 8,
    seqs: [
      [1, 50],
      [12, 30],
    ],
  },
  {
    name: 'hd 16, GQA 16 (two head groups per kv head)',
    nHeads: 16,
    nKvHeads: 1,
    headDim: 16,
    seqs: [
      [1, 90],
      [9, 20],
    ],
  },
  {
    // GQA 2, not more: lavapipe compiles the CPU decode kernel for 6 heads x 256 dims in about a minute cold
    name: 'hd 256, GQA 2',
    nHeads: 4,
    nKvHeads: 2,
    headDim: 256,
    seqs: [
      [1, 700],
      [20, 80],
    ],
  },
  {
    name: 'GQA 3, block size 5',
    nHeads: 6,
    nKvHeads: 2,
    headDim: 48,
    blockSize: 5,
    seqs: [
      [1, 123],
      [11, 46],
    ],
  },
  {
    name: 'sliding window 16: prefill chunk and decode',
    nHeads: 4,
    nKvHeads: 2,
    headDim: 64,
    slidingWindow: 16,
    seqs: [
      [50, 120],
      [1, 77],
    ],
  },
  {
    name: 'sliding window 100 over a split-K decode',
    nHeads: 4,
    nKvHeads: 4,
    headDim: 64,
    slidingWindow: 100,
    seqs: [[1, 2000]],
    expectSplit: true,
  },
  { name: 'long prefill chunk against 4097 cached', nHeads: 2, nKvHeads: 1, headDim: 64, seqs: [[130, 4097]] },
];

/** A case of the table by name (the softcap cases reuse its shapes). */
const tableCase = (name: string): Case => {
  const c = CASES.find((x) => x.name === name);
  if (!c) throw new Error(`no attention case named ${name}`);
  return c;
};

/**
 * Logit soft-capping (Gemma 2) on every path: prefill rows, decode rows, split-K decode and
 * its reduce, GQA, a sliding window. q is scaled up so that scores run well past the cap
 * (tens to hundreds), where capping flattens the softmax; shapes repeat the table's so the
 * pipelines are the ones it compiled already.
 */
export const SOFTCAP_CASES: Case[] = [
  {
    ...tableCase('decode and a prefill chunk with scores in the hundreds, GQA 2'),
    name: 'softcap 20, scores in the hundreds: decode and a prefill chunk, GQA 2',
    softcap: 20,
  },
  { ...tableCase('long decode 4100 (split-K), GQA 4'), name: 'softcap 30, long decode 4100 (split-K), GQA 4', qScale: 10, softcap: 30 },
  {
    ...tableCase('sliding window 100 over a split-K decode'),
    name: 'softcap 15, sliding window 100: prefill chunk and a split-K decode, GQA 2',
    nKvHeads: 2,
    seqs: [
      [50, 300],
      [1, 2000],
    ],
    qScale: 30,
    softcap: 15,
  },
];

/**
 * How far (relative L2) a softcap case's output must sit from the uncapped reference: far
 * past both tolerances, so a kernel that ignored the cap could not pass.
 */
const MIN_SOFTCAP_EFFECT = 0.2;

/** The decode kernel a case asks the plan for (undefined: the adapter's default). */
export type DecodeChoice = { decodeLanes: number; decodeDims: false } | { decodeDims: true; dimsKeysPerBlock?: number } | undefined;

export async function runCase(
  rt: KernelRuntime,
  c: Case,
  dtype: 'f16' | 'f32',
  seed: number,
  decode?: DecodeChoice,
  qPad = 0,
): Promise<number> {
  const rng = new Rng(seed);
  const blockSize = c.blockSize ?? 16;
  const { nHeads, nKvHeads, headDim } = c;
  const kvWidth = nKvHeads * headDim;
  // block ids drawn from a shuffled pool with spare blocks, so tables are non-contiguous
  const blocksNeeded = c.seqs.reduce((n, [, kv]) => n + Math.ceil(kv / blockSize), 0);
  const numBlocks = blocksNeeded + 3;
  const pool = rng.permutation(numBlocks);
  const dims = { numBlocks, blockSize, nKvHeads, headDim };
  // garbage (not zeros) everywhere, so a read of the wrong slot shows
  const kPhys = rng.floats(kvCacheLength(dims), -3, 3);
  const vPhys = rng.floats(kvCacheLength(dims), -3, 3);
  // rows of the sequences in a shuffled order inside the batch
  const order = rng.permutation(c.seqs.length);
  const starts = new Array<number>(c.seqs.length);
  let rows = 0;
  for (const i of order) {
    starts[i] = rows;
    rows += c.seqs[i]![0];
  }
  const refSeqs: RefSeq[] = [];
  const planSeqs = c.seqs.map(([qLen, kvLen], i) => {
    const blockTable = pool.splice(0, Math.ceil(kvLen / blockSize));
    const keys = roundTo(dtype, rng.floats(kvLen * kvWidth, -2, 2));
    const values = roundTo(dtype, rng.floats(kvLen * kvWidth, -2, 2));
    for (let t = 0; t < kvLen; t++) {
      const slot = blockTable[Math.floor(t / blockSize)]! * blockSize + (t % blockSize);
      for (let h = 0; h < nKvHeads; h++) {
        for (let d = 0; d < headDim; d++) {
          const at = kvCacheIndex(dims, slot, h, d);
          kPhys[at] = keys[t * kvWidth + h * headDim + d]!;
          vPhys[at] = values[t * kvWidth + h * headDim + d]!;
        }
      }
    }
    refSeqs.push({ qStart: starts[i]!, qLen, kvLen, keys, values });
    return { qStart: starts[i]!, qLen, kvLen, blockTable };
  });
  const q = rng.floats(rows * nHeads * headDim, -2, 2).map((v) => v * (c.qScale ?? 1));
  const cache = createKvCache(rt, { ...dims, dtype });
  rt.write(cache.k, dtype === 'f16' ? f32ToF16Bits(kPhys) : kPhys);
  rt.write(cache.v, dtype === 'f16' ? f32ToF16Bits(vPhys) : vPhys);
  const batch = prepareAttentionBatch(rt, {
    seqs: planSeqs,
    blockSize,
    nHeads,
    nKvHeads,
    headDim,
    numBlocks,
    ...c.plan,
    ...decode,
  });
  if (decode) expect([batch.decodeLanes, batch.decodeDims]).toEqual(decode.decodeDims ? [0, true] : [decode.decodeLanes, false]);
  if (c.expectSplit) expect(batch.splitRows).toBeGreaterThan(0);
  const out = poisoned(rt, 'f32', rows * nHeads * headDim);
  const rec = rt.recorder();
  attention(rt, rec, batch, {
    // qPad > 0: q rows qPad floats apart beyond their width, garbage between (a fused QKV row)
    q: rt.upload('f32', qPad > 0 ? padRows(rng, q, nHeads * headDim, qPad) : q),
    ...(qPad > 0 ? { qStride: nHeads * headDim + qPad } : {}),
    kCache: cache.k,
    vCache: cache.v,
    out,
    nHeads,
    nKvHeads,
    headDim,
    blockSize,
    slidingWindow: c.slidingWindow,
    softcap: c.softcap,
    dimsKeysPerBlock: decode?.decodeDims ? decode.dimsKeysPerBlock : undefined,
  });
  await rec.submit();
  const got = await rt.readFloats(out);
  const refArgs = {
    q,
    rows,
    seqs: refSeqs,
    nHeads,
    nKvHeads,
    headDim,
    scale: 1 / Math.sqrt(headDim),
    slidingWindow: c.slidingWindow ?? 0,
  };
  const ref = attentionRef({ ...refArgs, softcap: c.softcap });
  if (c.softcap) expect(relativeError(got, attentionRef(refArgs))).toBeGreaterThan(MIN_SOFTCAP_EFFECT);
  batch.destroy();
  for (const t of [cache.k, cache.v, out]) rt.destroyBuffer(t.buffer);
  return relativeError(got, ref);
}

/** Rows of `width` floats laid out `width + pad` apart, with random values in the gaps. */
function padRows(rng: Rng, a: Float32Array, width: number, pad: number): Float32Array {
  const rows = a.length / width;
  const out = rng.floats(rows * (width + pad), -50, 50);
  for (let r = 0; r < rows; r++) out.set(a.subarray(r * width, (r + 1) * width), r * (width + pad));
  return out;
}

/** A decode kernel choice and the name tests call it by. */
export type KernelChoice = readonly [name: string, decode: DecodeChoice];

/** The adapter's own choice (on CPU adapters one of the CPU decode kernels). */
export const DEFAULT_KERNEL: KernelChoice = ['default', undefined];

/** Whether a case has decode rows for the decode kernels to take (headDim a multiple of 4, at most 128). */
export function takesDecodeKernels(c: Case): boolean {
  const hasDecode = c.seqs.some(([qLen]) => qLen <= (c.plan?.decodeMaxRows ?? 4));
  return hasDecode && c.headDim % 4 === 0 && c.headDim <= 128;
}

/** Cases whose q is read through a row stride (q at the start of a fused QKV row). */
export const STRIDED_Q_CASES = [
  'decode batch of awkward lengths, GQA 2',
  'long decode 4100 (split-K), GQA 4',
  'prefill from empty cache, hd 80',
];

/**
 * Registers one test per (case, cache dtype, kernel the case gets from `kernelsFor`), and
 * strided-q tests for STRIDED_Q_CASES on `stridedKernels`; skipped where the adapter lacks
 * f16 or the dims kernel's subgroups.
 */
export function registerCaseTests(
  runtime: () => KernelRuntime,
  kernelsFor: (c: Case) => readonly KernelChoice[],
  stridedKernels: readonly KernelChoice[],
  cases: readonly Case[] = CASES,
): void {
  cases.forEach((c, i) => {
    for (const dtype of ['f32', 'f16'] as const) {
      for (const [kernelName, decode] of kernelsFor(c)) {
        it(`${dtype} cache, ${kernelName}: ${c.name}`, async ({ skip }) => {
          const rt = runtime();
          if (dtype === 'f16' && !rt.hasF16) return skip('the adapter has no shader-f16');
          if (decode?.decodeDims && !dimsDecodeSupported(rt, c.headDim)) return;
          const err = await runCase(rt, c, dtype, 1000 + i * 7 + (dtype === 'f16' ? 3 : 0), decode);
          expect(err).toBeLessThanOrEqual(TOLERANCE[dtype]);
        });
      }
    }
  });
  for (const name of STRIDED_Q_CASES) {
    const i = CASES.findIndex((c) => c.name === name);
    const c = CASES[i]!;
    for (const [kernelName, decode] of stridedKernels) {
      it(`f32 cache, ${kernelName}, q rows strided: ${c.name}`, async () => {
        const rt = runtime();
        if (decode?.decodeDims && !dimsDecodeSupported(rt, c.headDim)) return;
        if (decode && c.headDim % 4 !== 0) return;
        const err = await runCase(rt, c, 'f32', 5000 + i, decode, 2 * c.nKvHeads * c.headDim + 3);
        expect(err).toBeLessThanOrEqual(TOLERANCE.f32);
      });
    }
  }
}
