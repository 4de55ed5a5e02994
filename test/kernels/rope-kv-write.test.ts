import { describe, expect, it } from 'vitest';
import { createKvCache, kvCacheIndex, kvCacheLength } from '../../src/kernels/kv-write.js';
import { ropeInvFreq, type RopeLayout } from '../../src/kernels/rope.js';
import { ropeKvWrite } from '../../src/kernels/rope-kv-write.js';
import { f32ToF16Bits } from '../../src/kernels/runtime.js';
import { Rng } from '../helpers/random.js';
import { relativeError, roundTo, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { ropeRef } from '../reference/rope.js';

const runtime = useRuntime();

interface Case {
  rows: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  rotaryDim: number;
  blockSize: number;
  numBlocks: number;
  /** Values after the v heads in each row (a wider buffer's garbage). */
  after: number;
}

describe('ropeKvWrite', () => {
  const cases: Case[] = [
    { rows: 1, nHeads: 1, nKvHeads: 1, headDim: 2, rotaryDim: 2, blockSize: 16, numBlocks: 2, after: 0 },
    { rows: 7, nHeads: 6, nKvHeads: 2, headDim: 24, rotaryDim: 24, blockSize: 4, numBlocks: 5, after: 3 },
    // GLM-style partial rotary (half of head_dim), GQA 4
    { rows: 33, nHeads: 8, nKvHeads: 2, headDim: 64, rotaryDim: 32, blockSize: 16, numBlocks: 4, after: 0 },
    // an odd share of partial rotary, block of one token
    { rows: 17, nHeads: 3, nKvHeads: 3, headDim: 80, rotaryDim: 32, blockSize: 1, numBlocks: 40, after: 5 },
    { rows: 129, nHeads: 12, nKvHeads: 4, headDim: 64, rotaryDim: 64, blockSize: 16, numBlocks: 12, after: 0 },
  ];
  for (const layout of ['half', 'interleaved'] as const satisfies readonly RopeLayout[]) {
    for (const dtype of ['f32', 'f16'] as const) {
      for (const c of cases) {
        it(`${layout} ${dtype} rows=${c.rows} heads=${c.nHeads}/${c.nKvHeads} headDim=${c.headDim} rotary=${c.rotaryDim} block=${c.blockSize}`, async ({
          skip,
        }) => {
          const rt = runtime();
          if (dtype === 'f16' && !rt.hasF16) return skip('the adapter has no shader-f16');
          const rng = new Rng(c.rows * 131 + c.headDim * 7 + c.rotaryDim + (layout === 'half' ? 0 : 1) + (dtype === 'f16' ? 3 : 0));
          const qWidth = c.nHeads * c.headDim;
          const kvWidth = c.nKvHeads * c.headDim;
          const rowStride = qWidth + 2 * kvWidth + c.after;
          const x = rng.floats(c.rows * rowStride, -2, 2);
          const positions = Uint32Array.from({ length: c.rows }, () => rng.int(5000));
          // distinct slots anywhere in the cache, in random order
          const free = Array.from({ length: c.numBlocks * c.blockSize }, (_, i) => i);
          const slots = Uint32Array.from({ length: c.rows }, () => free.splice(rng.int(free.length), 1)[0]!);
          const invFreq = ropeInvFreq({ rotaryDim: c.rotaryDim, theta: 10000 });
          const total = kvCacheLength(c);
          const before = { k: roundTo(dtype, rng.floats(total)), v: roundTo(dtype, rng.floats(total)) };
          const cache = createKvCache(rt, { ...c, dtype });
          for (const which of ['k', 'v'] as const) rt.write(cache[which], dtype === 'f16' ? f32ToF16Bits(before[which]) : before[which]);
          const qkv = rt.upload('f32', x);
          const rec = rt.recorder();
          ropeKvWrite(rt, rec, {
            qkv,
            positions: rt.upload('u32', positions),
            invFreq: rt.upload('f32', invFreq),
            slots: rt.upload('u32', slots),
            kCache: cache.k,
            vCache: cache.v,
            rows: c.rows,
            nHeads: c.nHeads,
            nKvHeads: c.nKvHeads,
            headDim: c.headDim,
            rotaryDim: c.rotaryDim,
            layout,
            rowStride,
            blockSize: c.blockSize,
          });
          await rec.submit();

          // q and k heads rotate in place, as rope over nHeads + nKvHeads heads would
          const ref = ropeRef(x, positions, invFreq, {
            rows: c.rows,
            nHeads: c.nHeads + c.nKvHeads,
            headDim: c.headDim,
            rotaryDim: c.rotaryDim,
            layout,
            rowStride,
          });
          const got = await rt.readFloats(qkv);
          expect(relativeError(got, ref)).toBeLessThanOrEqual(TOLERANCE.f32);
          for (let r = 0; r < c.rows; r++) {
            for (let i = 0; i < rowStride; i++) {
              const rotated = i < qWidth + kvWidth && i % c.headDim < c.rotaryDim;
              if (!rotated && got[r * rowStride + i] !== x[r * rowStride + i]) throw new Error(`row ${r} element ${i} changed`);
            }
          }

          // the cache: each row's rotated k and its v in the row's slot, nothing else touched
          for (const [which, start] of [
            ['k', qWidth],
            ['v', qWidth + kvWidth],
          ] as const) {
            const gotCache = await rt.readFloats(cache[which]);
            const expected = Float64Array.from(before[which]);
            const written = new Uint8Array(total);
            for (let r = 0; r < c.rows; r++) {
              for (let h = 0; h < c.nKvHeads; h++) {
                for (let d = 0; d < c.headDim; d++) {
                  const at = kvCacheIndex(c, slots[r]!, h, d);
                  const src = r * rowStride + start + h * c.headDim + d;
                  expected[at] = which === 'k' ? ref[src]! : roundTo(dtype, Float32Array.of(x[src]!))[0]!;
                  written[at] = 1;
                }
              }
            }
            if (which === 'v') {
              let mismatches = 0;
              for (let i = 0; i < total; i++) if (!Object.is(gotCache[i], Math.fround(expected[i]!))) mismatches++;
              expect(mismatches, 'v cache mismatches').toBe(0);
            } else {
              expect(relativeError(gotCache, expected)).toBeLessThanOrEqual(TOLERANCE[dtype]);
              for (let i = 0; i < total; i++)
                if (!written[i] && !Object.is(gotCache[i], expected[i])) throw new Error(`k cache element ${i} changed`);
            }
          }
        });
      }
    }
  }

  it('rejects a row stride narrower than its heads and an odd rotary dim', () => {
    const rt = runtime();
    const cache = createKvCache(rt, { numBlocks: 1, blockSize: 4, nKvHeads: 1, headDim: 4, dtype: 'f32' });
    const base = {
      qkv: rt.tensor('f32', 64),
      positions: rt.tensor('u32', 4),
      invFreq: rt.tensor('f32', 2),
      slots: rt.tensor('u32', 4),
      kCache: cache.k,
      vCache: cache.v,
      rows: 2,
      nHeads: 2,
      nKvHeads: 1,
      headDim: 4,
      layout: 'half' as const,
      blockSize: 4,
    };
    const rec = rt.recorder();
    expect(() => ropeKvWrite(rt, rec, { ...base, rowStride: 12 })).toThrow(/rowStride 12/);
    expect(() => ropeKvWrite(rt, rec, { ...base, rotaryDim: 3 })).toThrow(/rotaryDim 3/);
  });
});
