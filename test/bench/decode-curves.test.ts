/** Decode curves measured on the real engine (lavapipe here), and the TPOT-target pick. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { largestBatchWithin, measureDecodeCurves, type DecodePoint } from '../../src/bench/decode-curves.js';
import { Engine } from '../../src/engine/engine.js';
import { generateTestModel } from '../../src/testing/generate-model.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const point = (batch: number, contextTokens: number, tpotMs: number, preemptions = 0): DecodePoint => ({
  batch,
  contextTokens,
  tpotMs,
  tpotSpread: 0,
  decodeTokensPerS: (batch * 1000) / tpotMs,
  prefillMs: 0,
  repeats: 1,
  preemptions,
});

describe('decode curves', () => {
  it('largest batch within a TPOT target, per context; preempted points never qualify', () => {
    const points = [point(1, 128, 10), point(2, 128, 12), point(4, 128, 30), point(8, 128, 60), point(1, 1024, 55), point(2, 1024, 20, 3)];
    expect(largestBatchWithin(points, 50)).toEqual([
      { contextTokens: 128, batch: 4, tpotMs: 30 },
      { contextTokens: 1024, batch: null, tpotMs: null },
    ]);
  });

  it('on the engine: every point timed, throughput = batch / TPOT, no preemption', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'curves-'));
    dirs.push(dir);
    const model = await generateTestModel(join(dir, 'm'), { preset: 'tiny', dtype: 'f32' });
    const engine = await Engine.load(model.dir, { forceF32: true, maxBatchSequences: 4, responseCacheEntries: 0 });
    try {
      const progress: number[] = [];
      const points = await measureDecodeCurves(engine, {
        batchSizes: [1, 4],
        contextLengths: [8, 40],
        decodeTokens: 8,
        repeats: 1,
        vocabSize: model.spec.vocabSize,
        onProgress: (done) => progress.push(done),
      });
      expect(points.map((p) => [p.contextTokens, p.batch])).toEqual([
        [8, 1],
        [8, 4],
        [40, 1],
        [40, 4],
      ]);
      expect(progress).toEqual([1, 2, 3, 4]);
      for (const p of points) {
        expect(p.tpotMs).toBeGreaterThan(0);
        expect(p.preemptions).toBe(0);
        // tokens in the window / window = batch / TPOT
        expect(p.decodeTokensPerS).toBeCloseTo((p.batch * 1000) / p.tpotMs, 6);
        expect(p.prefillMs).toBeGreaterThan(0);
      }
      await expect(
        measureDecodeCurves(engine, {
          batchSizes: [1],
          contextLengths: [engine.contextLength],
          decodeTokens: 8,
          repeats: 1,
          vocabSize: model.spec.vocabSize,
        }),
      ).rejects.toThrow(/exceeds the model/);
    } finally {
      await engine.close();
    }
  });
});
