import { describe, expect, it } from 'vitest';
import { attention, prepareAttentionBatch, type AttentionBatchOptions } from '../../src/kernels/attention.js';
import { createKvCache, kvCacheIndex, kvCacheLength, kvWrite } from '../../src/kernels/kv-write.js';
import { f32ToF16Bits } from '../../src/kernels/runtime.js';
import { isAutoGlmError } from '../../src/errors.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, roundTo, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { attentionRef } from '../reference/attention.js';
import { DEFAULT_KERNEL, registerCaseTests, SOFTCAP_CASES, takesDecodeKernels, type KernelChoice } from './attention-cases.js';

const runtime = useRuntime();

// The case table on the adapter's default kernel, and on the tiled kernel (the GPU default)
// wherever a case has decode rows; the CPU decode kernels are in attention-cpu-decode.test.ts.
const TILED_DECODE: KernelChoice = ['tiled decode', { decodeLanes: 0, decodeDims: false }];

describe('attention', () => {
  registerCaseTests(runtime, (c) => [takesDecodeKernels(c) ? TILED_DECODE : DEFAULT_KERNEL], [TILED_DECODE, DEFAULT_KERNEL]);

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

  it('refuses a softcap that is negative, NaN or not an f32 before recording', () => {
    const rt = runtime();
    const [nHeads, nKvHeads, headDim, blockSize] = [2, 1, 16, 16];
    const batch = prepareAttentionBatch(rt, {
      seqs: [{ qStart: 0, qLen: 1, kvLen: 3, blockTable: [0] }],
      blockSize,
      nHeads,
      nKvHeads,
      headDim,
    });
    const cache = createKvCache(rt, { numBlocks: 1, blockSize, nKvHeads, headDim });
    const o = { q: rt.tensor('f32', nHeads * headDim), kCache: cache.k, vCache: cache.v, out: rt.tensor('f32', nHeads * headDim) };
    const rec = rt.recorder();
    for (const softcap of [-1, -0.5, NaN, Infinity, -Infinity, 1e39, 1e-40]) {
      expect(() => attention(rt, rec, batch, { ...o, nHeads, nKvHeads, headDim, blockSize, softcap }), `softcap ${softcap}`).toThrow(
        /attention: softcap must be 0 \(none\) or a positive finite f32/,
      );
    }
    expect(rec.dispatchCount).toBe(0);
    // 0 and undefined are "none", a positive cap records
    for (const softcap of [0, undefined, 50]) attention(rt, rec, batch, { ...o, nHeads, nKvHeads, headDim, blockSize, softcap });
    expect(rec.dispatchCount).toBeGreaterThan(0);
    batch.destroy();
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

// Soft-capped attention on the kernels each kernel profile picks by default: on a CPU
// adapter the 'cpu' profile runs the dims decode kernel (prefill rows too), the 'gpu' profile
// the tiled decode kernel and the prefill kernel. (The CPU decode kernels' explicit choices
// are in attention-cpu-decode.test.ts.)
for (const kernelProfile of ['cpu', 'gpu'] as const) {
  describe(`attention with logit soft-capping, ${kernelProfile} kernel profile`, () => {
    const profiled = useRuntime({ kernelProfile });
    registerCaseTests(profiled, () => [DEFAULT_KERNEL], [], SOFTCAP_CASES);
  });
}
