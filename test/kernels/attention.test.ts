import { describe, expect, it } from 'vitest';
import { attention, prepareAttentionBatch, type AttentionBatchOptions } from '../../src/kernels/attention.js';
import { createKvCache, kvCacheIndex, kvCacheLength, kvWrite } from '../../src/kernels/kv-write.js';
import { dimsDecodeSupported } from '../../src/kernels/attention-decode-dims.js';
import { f32ToF16Bits, type KernelRuntime } from '../../src/kernels/runtime.js';
import { isAutoGlmError } from '../../src/errors.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, roundTo, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { attentionRef, type RefSeq } from '../reference/attention.js';

const runtime = useRuntime();

interface Case {
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
}

const CASES: Case[] = [
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
    name: 'hd 256, GQA 6',
    nHeads: 6,
    nKvHeads: 1,
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

function shuffled(rng: Rng, n: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** The decode kernel a case asks the plan for (undefined: the adapter's default). */
type DecodeChoice = { decodeLanes: number; decodeDims: false } | { decodeDims: true; dimsKeysPerBlock?: number } | undefined;

async function runCase(rt: KernelRuntime, c: Case, dtype: 'f16' | 'f32', seed: number, decode?: DecodeChoice, qPad = 0): Promise<number> {
  const rng = new Rng(seed);
  const blockSize = c.blockSize ?? 16;
  const { nHeads, nKvHeads, headDim } = c;
  const kvWidth = nKvHeads * headDim;
  // block ids drawn from a shuffled pool with spare blocks, so tables are non-contiguous
  const blocksNeeded = c.seqs.reduce((n, [, kv]) => n + Math.ceil(kv / blockSize), 0);
  const numBlocks = blocksNeeded + 3;
  const pool = shuffled(rng, numBlocks);
  const dims = { numBlocks, blockSize, nKvHeads, headDim };
  // garbage (not zeros) everywhere, so a read of the wrong slot shows
  const kPhys = rng.floats(kvCacheLength(dims), -3, 3);
  const vPhys = rng.floats(kvCacheLength(dims), -3, 3);
  // rows of the sequences in a shuffled order inside the batch
  const order = shuffled(rng, c.seqs.length);
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
    dimsKeysPerBlock: decode?.decodeDims ? decode.dimsKeysPerBlock : undefined,
  });
  await rec.submit();
  const got = await rt.readFloats(out);
  const ref = attentionRef({
    q,
    rows,
    seqs: refSeqs,
    nHeads,
    nKvHeads,
    headDim,
    scale: 1 / Math.sqrt(headDim),
    slidingWindow: c.slidingWindow ?? 0,
  });
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

// Every decode kernel runs where it can: the tiled one (the GPU default), the lanes one and
// the dims one (the CPU defaults; dims needs subgroups and headDim a multiple of 32); cases
// without decode rows run once.
const DECODE_KERNELS: readonly (readonly [string, DecodeChoice])[] = [
  ['tiled decode', { decodeLanes: 0, decodeDims: false }],
  ['lanes decode', { decodeLanes: 8, decodeDims: false }],
  ['dims decode', { decodeDims: true }],
  // the dims kernel's main loop takes keys in blocks (1 or 4 by default, by the item's
  // registers); each block size leaves other tails for the one-key loop
  ['dims decode, 1 key per block', { decodeDims: true, dimsKeysPerBlock: 1 }],
  ['dims decode, 3 keys per block', { decodeDims: true, dimsKeysPerBlock: 3 }],
  ['dims decode, 4 keys per block', { decodeDims: true, dimsKeysPerBlock: 4 }],
];

describe('attention', () => {
  CASES.forEach((c, i) => {
    const hasDecode = c.seqs.some(([qLen]) => qLen <= (c.plan?.decodeMaxRows ?? 4));
    const kernels = hasDecode && c.headDim % 4 === 0 && c.headDim <= 128 ? DECODE_KERNELS : ([['default', undefined]] as const);
    for (const dtype of ['f32', 'f16'] as const) {
      for (const [kernelName, decode] of kernels) {
        it(`${dtype} cache, ${kernelName}: ${c.name}`, async () => {
          const rt = runtime();
          if (dtype === 'f16' && !rt.hasF16) return;
          if (decode?.decodeDims && !dimsDecodeSupported(rt, c.headDim)) return;
          const err = await runCase(rt, c, dtype, 1000 + i * 7 + (dtype === 'f16' ? 3 : 0), decode);
          expect(err).toBeLessThanOrEqual(TOLERANCE[dtype]);
        });
      }
    }
  });

  // q read through a row stride (q at the start of a fused QKV row), on every kernel
  for (const name of ['decode batch of awkward lengths, GQA 2', 'long decode 4100 (split-K), GQA 4', 'prefill from empty cache, hd 80']) {
    const i = CASES.findIndex((c) => c.name === name);
    const c = CASES[i]!;
    for (const [kernelName, decode] of [...DECODE_KERNELS, ['default', undefined] as const]) {
      it(`f32 cache, ${kernelName}, q rows strided: ${c.name}`, async () => {
        const rt = runtime();
        if (decode?.decodeDims && !dimsDecodeSupported(rt, c.headDim)) return;
        if (decode && c.headDim % 4 !== 0) return;
        const err = await runCase(rt, c, 'f32', 5000 + i, decode, 2 * c.nKvHeads * c.headDim + 3);
        expect(err).toBeLessThanOrEqual(TOLERANCE.f32);
      });
    }
  }

  it('kvWrite then attention in one command buffer: a decode step sees its own new token', async () => {
    const rt = runtime();
    const rng = new Rng(77);
    const [nHeads, nKvHeads, headDim, blockSize] = [4, 2, 32, 4];
    const kvWidth = nKvHeads * headDim;
    const dims = { numBlocks: 6, blockSize, nKvHeads, headDim };
    const blockTable = [4, 1, 5];
    // 9 tokens already cached, 1 new one at position 9 (slot in block 5, offset 1)
    const kvLen = 10;
    const keys = roundTo(rt.preferredDType, rng.floats(kvLen * kvWidth));
    const values = roundTo(rt.preferredDType, rng.floats(kvLen * kvWidth));
    const kPhys = rng.floats(kvCacheLength(dims));
    const vPhys = rng.floats(kvCacheLength(dims));
    for (let t = 0; t < kvLen - 1; t++) {
      const slot = blockTable[Math.floor(t / blockSize)]! * blockSize + (t % blockSize);
      for (let i = 0; i < kvWidth; i++) {
        kPhys[kvCacheIndex(dims, slot, Math.floor(i / headDim), i % headDim)] = keys[t * kvWidth + i]!;
        vPhys[kvCacheIndex(dims, slot, Math.floor(i / headDim), i % headDim)] = values[t * kvWidth + i]!;
      }
    }
    const cache = createKvCache(rt, dims);
    const f16 = cache.k.dtype === 'f16';
    rt.write(cache.k, f16 ? f32ToF16Bits(kPhys) : kPhys);
    rt.write(cache.v, f16 ? f32ToF16Bits(vPhys) : vPhys);
    const q = rng.floats(nHeads * headDim);
    const batch = prepareAttentionBatch(rt, { seqs: [{ qStart: 0, qLen: 1, kvLen, blockTable }], blockSize, nHeads, nKvHeads, headDim });
    const out = poisoned(rt, 'f32', nHeads * headDim);
    const rec = rt.recorder();
    kvWrite(rt, rec, {
      k: rt.upload('f32', keys.slice((kvLen - 1) * kvWidth)),
      v: rt.upload('f32', values.slice((kvLen - 1) * kvWidth)),
      slots: rt.upload('u32', Uint32Array.of(5 * blockSize + 1)),
      kCache: cache.k,
      vCache: cache.v,
      rows: 1,
      nKvHeads,
      headDim,
      blockSize,
    });
    attention(rt, rec, batch, { q: rt.upload('f32', q), kCache: cache.k, vCache: cache.v, out, nHeads, nKvHeads, headDim, blockSize });
    await rec.submit();
    const ref = attentionRef({
      q,
      rows: 1,
      seqs: [{ qStart: 0, qLen: 1, kvLen, keys, values }],
      nHeads,
      nKvHeads,
      headDim,
      scale: 1 / Math.sqrt(headDim),
      slidingWindow: 0,
    });
    expect(relativeError(await rt.readFloats(out), ref)).toBeLessThanOrEqual(TOLERANCE[cache.k.dtype === 'f16' ? 'f16' : 'f32']);
  });

  it('reuses a batch across steps, growing its buffers', async () => {
    const rt = runtime();
    const small = prepareAttentionBatch(rt, {
      seqs: [{ qStart: 0, qLen: 1, kvLen: 3, blockTable: [0] }],
      blockSize: 16,
      nHeads: 2,
      nKvHeads: 1,
      headDim: 16,
    });
    const tables = small.blockTables.tensor;
    const same = prepareAttentionBatch(rt, {
      seqs: [{ qStart: 0, qLen: 1, kvLen: 5, blockTable: [2] }],
      blockSize: 16,
      nHeads: 2,
      nKvHeads: 1,
      headDim: 16,
      reuse: small,
    });
    expect(same).toBe(small);
    expect(same.blockTables.tensor).toBe(tables);
    const grown = prepareAttentionBatch(rt, {
      seqs: [{ qStart: 0, qLen: 1, kvLen: 1000, blockTable: Array.from({ length: 63 }, (_, i) => i) }],
      blockSize: 16,
      nHeads: 2,
      nKvHeads: 1,
      headDim: 16,
      reuse: small,
    });
    expect(grown).toBe(small);
    expect(grown.blockTables.tensor!.length).toBeGreaterThanOrEqual(63);
    grown.destroy();
  });

  it('rejects a block table shorter than the context, and bad GQA shapes', () => {
    const rt = runtime();
    const base = { blockSize: 16, nHeads: 4, nKvHeads: 2, headDim: 32 };
    const attempt = (o: Partial<AttentionBatchOptions>): unknown => {
      try {
        prepareAttentionBatch(rt, { ...base, seqs: [{ qStart: 0, qLen: 1, kvLen: 40, blockTable: [0, 1, 2] }], ...o });
      } catch (e) {
        return e;
      }
      return undefined;
    };
    expect(attempt({})).toBeUndefined();
    expect(isAutoGlmError(attempt({ seqs: [{ qStart: 0, qLen: 1, kvLen: 40, blockTable: [0, 1] }] }), 'internal_error')).toBe(true);
    expect(isAutoGlmError(attempt({ nKvHeads: 3 }), 'internal_error')).toBe(true);
    expect(isAutoGlmError(attempt({ numBlocks: 2 }), 'internal_error')).toBe(true);
    expect(isAutoGlmError(attempt({ seqs: [{ qStart: 0, qLen: 5, kvLen: 4, blockTable: [0] }] }), 'internal_error')).toBe(true);
  });
});
