/**
 * Our engine vs llama.cpp on the same weights (GGUF export -> node-llama-cpp on the CPU).
 * Runs when the optional node-llama-cpp is installed; otherwise the test is skipped and its
 * name says why.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCompare } from '../../src/bench/compare-run.js';
import { loadNodeLlamaCpp } from '../../src/bench/llama-cpp.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { destroyAllGpus } from '../../src/kernels/device.js';

const peer = await loadNodeLlamaCpp();
const dirs: string[] = [];
afterAll(async () => {
  destroyAllGpus();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('bench compare', () => {
  it.skipIf(!peer.mod)(
    `greedy tokens of our engine and llama.cpp agree on a tiny generated llama model${peer.mod ? '' : ` (SKIPPED: ${peer.reason})`}`,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'compare-test-'));
      dirs.push(dir);
      const model = await generateTestModel(join(dir, 'model'), { preset: 'tiny', architecture: 'llama', dtype: 'f32', seed: 5 });
      const { results, written } = await runCompare({
        modelDir: model.dir,
        dtypes: ['f32', 'f16'],
        prompts: ['hello world', 'a story'],
        maxTokens: 12,
        prefillTokens: 64,
        repeats: 1,
        llamaGpu: 'cpu',
        // llama.cpp's spinning threads crawl beside lavapipe's on two shared cores
        llamaThreads: 1,
        resultsDir: join(dir, 'results'),
        log: () => {},
      });
      expect(results.peerAvailable).toBe(true);
      const f32 = results.comparisons.find((c) => c.dtype === 'f32')!;
      expect(f32.llamaCpp!.backend).toBe('cpu');
      // Two independent f32 forward passes of the same weights: the same greedy tokens.
      for (const a of f32.agreement!) expect(a.matchingPrefix, `f32 prompt "${a.prompt}"`).toBe(12);
      expect(f32.ours.greedy[0]).toHaveLength(12);
      for (const side of [f32.ours, f32.llamaCpp!]) {
        expect(side.prefillTokensPerS).toBeGreaterThan(0);
        expect(side.decodeTokensPerS).toBeGreaterThan(0);
      }
      expect(f32.decodeRatio).toBeGreaterThan(0);
      const f16 = results.comparisons.find((c) => c.dtype === 'f16');
      // f16 rounding may flip a near-tie late in a random model's sequence, not at its start.
      if (f16) for (const a of f16.agreement!) expect(a.matchingPrefix).toBeGreaterThanOrEqual(1);
      const md = await readFile(written!.markdownPath!, 'utf8');
      expect(md).toContain('llama.cpp');
      expect(md).toContain('12/12');
    },
  );
});
