import { describe, expect, it } from 'vitest';
import { createKvCache, kvCacheIndex, kvCacheLength, kvWrite, maxKvBlocks } from '../../src/kernels/kv-write.js';
import { f32ToF16Bits } from '../../src/kernels/runtime.js';
import { isAutoGlmError } from '../../src/errors.js';
import { Rng } from '../helpers/random.js';
import { roundTo, useRuntime } from '../helpers/gpu.js';

const runtime = useRuntime();

describe('kvWrite', () => {
  const cases = [
    { rows: 1, nKvHeads: 1, headDim: 8, blockSize: 16, numBlocks: 2 },
    { rows: 33, nKvHeads: 2, headDim: 24, blockSize: 16, numBlocks: 5 },
    { rows: 129, nKvHeads: 4, headDim: 64, blockSize: 8, numBlocks: 20 },
    { rows: 7, nKvHeads: 3, headDim: 80, blockSize: 1, numBlocks: 9 },
  ];
  // fused: k and v are slices of one wider row (a fused QKV projection's output), read
  // through rowStride and offsets, with garbage around them
  for (const [dtype, fused] of [
    ['f32', false],
    ['f16', false],
    ['f32', true],
    ['f16', true],
  ] as const) {
    for (const c of cases) {
      it(`${dtype} rows=${c.rows} kvHeads=${c.nKvHeads} headDim=${c.headDim} block=${c.blockSize}${fused ? ' (fused QKV rows)' : ''}`, async ({
        skip,
      }) => {
        const rt = runtime();
        if (dtype === 'f16' && !rt.hasF16) return skip('the adapter has no shader-f16');
        const rng = new Rng(c.rows * 977 + c.headDim + (dtype === 'f16' ? 5 : 0));
        const width = c.nKvHeads * c.headDim;
        const total = kvCacheLength(c);
        // distinct random slots anywhere in the cache, in shuffled order
        const slots = Uint32Array.from(rng.permutation(c.numBlocks * c.blockSize).slice(0, c.rows));
        const k = rng.floats(c.rows * width, -4, 4);
        const v = rng.floats(c.rows * width, -4, 4);
        const before = { k: roundTo(dtype, rng.floats(total)), v: roundTo(dtype, rng.floats(total)) };
        const cache = createKvCache(rt, { ...c, dtype });
        for (const which of ['k', 'v'] as const) {
          rt.write(cache[which], dtype === 'f16' ? f32ToF16Bits(before[which]) : before[which]);
        }
        const rec = rt.recorder();
        // fused rows: [q (3 * width) | k | v | 5 more], so row r's k starts at r * stride + 3 * width
        const stride = 5 * width + 5;
        const qkv = rng.floats(c.rows * stride, -9, 9);
        for (let r = 0; r < c.rows; r++) {
          qkv.set(k.subarray(r * width, (r + 1) * width), r * stride + 3 * width);
          qkv.set(v.subarray(r * width, (r + 1) * width), r * stride + 4 * width);
        }
        const fusedTensor = fused ? rt.upload('f32', qkv) : null;
        kvWrite(rt, rec, {
          ...(fusedTensor
            ? { k: fusedTensor, v: fusedTensor, rowStride: stride, kOffset: 3 * width, vOffset: 4 * width }
            : { k: rt.upload('f32', k), v: rt.upload('f32', v) }),
          slots: rt.upload('u32', slots),
          kCache: cache.k,
          vCache: cache.v,
          ...c,
        });
        await rec.submit();
        for (const [which, src] of [
          ['k', k],
          ['v', v],
        ] as const) {
          const got = await rt.readFloats(cache[which]);
          const expected = Float32Array.from(before[which]);
          const fresh = roundTo(dtype, src);
          for (let r = 0; r < c.rows; r++) {
            for (let h = 0; h < c.nKvHeads; h++) {
              for (let d = 0; d < c.headDim; d++) expected[kvCacheIndex(c, slots[r]!, h, d)] = fresh[r * width + h * c.headDim + d]!;
            }
          }
          // every element: written ones hold the new value in the right slot, the rest are untouched
          let mismatches = 0;
          for (let i = 0; i < total; i++) if (!Object.is(got[i], expected[i])) mismatches++;
          expect(mismatches, `${which} cache mismatches`).toBe(0);
        }
      });
    }
  }

  it('rejects a per-layer cache over the binding limit, naming it', () => {
    const rt = runtime();
    const dims = { blockSize: 16, nKvHeads: 8, headDim: 128, dtype: 'f32' as const };
    const max = maxKvBlocks(rt, dims);
    expect(max * 16 * 8 * 128 * 4).toBeLessThanOrEqual(rt.maxBindingBytes);
    let error: unknown;
    try {
      createKvCache(rt, { ...dims, numBlocks: max + 1 });
    } catch (e) {
      error = e;
    }
    expect(isAutoGlmError(error, 'gpu_out_of_memory')).toBe(true);
    expect((error as Error).message).toContain(`maxStorageBufferBindingSize of ${rt.maxBindingBytes}`);
  });
});
