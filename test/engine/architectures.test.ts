/**
 * Every supported architecture through the real loader and the GPU forward pass, against
 * the float64 reference written from the transformers definitions (test/reference/forward.ts):
 * logits at every position of a 64-token prompt, decode through the KV cache equal to
 * recomputation (with the norms folded into the matmuls and without), and greedy generation
 * of 32 tokens.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { loadModelFolder } from '../../src/engine/model-folder.js';
import { SUPPORTED_ARCHITECTURES } from '../../src/engine/model/model-spec.js';
import { ModelRunner } from '../../src/engine/runner/model-runner.js';
import { uploadModel } from '../../src/engine/runner/upload-model.js';
import { KernelRuntime } from '../../src/kernels/runtime.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { relativeError } from '../helpers/gpu.js';
import { Rng } from '../helpers/random.js';
import { loadReferenceModel } from '../reference/forward.js';

/** Every supported model_type (gemma3, Gemma 3 with its vision tower, at the end). */
const ARCHITECTURES = SUPPORTED_ARCHITECTURES;
const PROMPT_TOKENS = 64;
/**
 * Each test loads a model with its own kernel variants: on a cold shader cache (a fresh CI
 * machine) the first tests compile dozens of pipelines on two busy cores, measured near the
 * default 120 s once; warm they take 1-3 s.
 */
const COLD_COMPILE_TIMEOUT_MS = 300_000;

/**
 * Engine precision variants: f32 weights end to end, and the f16 path from a bf16 checkpoint;
 * each with the kernels the adapter gets by default (on lavapipe the CPU-tuned ones) and with
 * the GPU kernel profile (the tilings and attention kernels a real GPU runs), so that the
 * GPU code path is checked on a machine without a GPU.
 */
const VARIANTS = [
  { name: 'f32 checkpoint, f32 GPU path', dtype: 'f32', forceF32: true, tolerance: 1e-4, kernelProfile: 'auto' },
  { name: 'bf16 checkpoint, f16 GPU path', dtype: 'bf16', forceF32: false, tolerance: 1e-2, kernelProfile: 'auto' },
  { name: 'f32 checkpoint, f32, GPU kernel profile', dtype: 'f32', forceF32: true, tolerance: 1e-4, kernelProfile: 'gpu' },
  { name: 'bf16 checkpoint, f16, GPU kernel profile', dtype: 'bf16', forceF32: false, tolerance: 1e-2, kernelProfile: 'gpu' },
] as const;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-arch-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function flatten(rows: Float64Array[]): Float64Array {
  const out = new Float64Array(rows.reduce((n, r) => n + r.length, 0));
  let o = 0;
  for (const r of rows) {
    out.set(r, o);
    o += r.length;
  }
  return out;
}

for (const arch of ARCHITECTURES) {
  describe(arch, () => {
    for (const variant of VARIANTS) {
      it(
        `${variant.name}: logits at every position, KV-cache decode, greedy 32 tokens match the float64 reference`,
        async () => {
          const dir = join(root, `${arch}-${variant.dtype}-${variant.kernelProfile}`);
          // mistral with a sliding window shorter than the prompt, so the window is exercised
          const generated = await generateTestModel(dir, {
            architecture: arch,
            dtype: variant.dtype,
            seed: 7,
            ...(arch === 'mistral' ? { slidingWindow: 24 } : {}),
            // one layer of experts and one dense MLP (mlp_only_layers), so that both paths run
            ...(arch === 'qwen3_moe' || arch === 'qwen2_moe' ? { mlpOnlyLayers: [1] } : {}),
            // GLM-4.5's router with what its published configs leave at 1: 8 experts in 2
            // groups of which 1 is chosen; q/k norms (GLM-4.5's use_qk_norm); layer 0 dense
            ...(arch === 'glm4_moe' ? { experts: 8, expertGroups: 2, topkGroup: 1, useQkNorm: true } : {}),
          });
          const reference = await loadReferenceModel(dir);
          const rng = new Rng(arch.length * 101 + variant.dtype.length);
          const prompt = Array.from({ length: PROMPT_TOKENS }, () => 1 + rng.int(generated.spec.vocabSize - 1));

          // logits of every prompt position, then one decode step through the cache
          const rt = await KernelRuntime.create({ forceF32: variant.forceF32, kernelProfile: variant.kernelProfile });
          if (variant.kernelProfile === 'gpu') expect(rt.ctx.kernelProfile).toBe('gpu');
          const folder = await loadModelFolder(dir);
          try {
            const model = await uploadModel(rt, folder, { weightDType: rt.preferredDType });
            const blockSize = 16;
            // norms folded into the matmuls (the default; post-norms added into the residual stream) and as dispatches of their own
            for (const foldNorms of [true, false]) {
              const runner = new ModelRunner(rt, model, {
                numBlocks: 8,
                blockSize,
                maxRows: 128,
                maxSampleRows: 128,
                countSlots: 1,
                kvDType: rt.preferredDType,
                foldNorms,
              });
              const blockTable = [5, 2, 7, 0, 3]; // scattered on purpose
              const refCache = reference.newCache();
              const refLogits = reference.forward(prompt, refCache);
              const gpuLogits = await runner.logits([{ tokenIds: prompt, startPosition: 0, blockTable }]);
              expect(relativeError(gpuLogits, flatten(refLogits))).toBeLessThanOrEqual(variant.tolerance);
              // per position as well, so that an error at one position cannot hide in the norm
              const V = generated.spec.vocabSize;
              for (let p = 0; p < PROMPT_TOKENS; p += 9) {
                expect(relativeError(gpuLogits.subarray(p * V, (p + 1) * V), refLogits[p]!)).toBeLessThanOrEqual(variant.tolerance * 2);
              }

              const next = 3 + rng.int(V - 3);
              const decode = await runner.logits([{ tokenIds: [next], startPosition: PROMPT_TOKENS, blockTable }]);
              const recomputed = await runner.logits([{ tokenIds: [...prompt, next], startPosition: 0, blockTable }]);
              const refNext = reference.forward([next], refCache)[0]!;
              expect(relativeError(decode, refNext)).toBeLessThanOrEqual(variant.tolerance);
              expect(relativeError(decode, recomputed.subarray(PROMPT_TOKENS * V))).toBeLessThanOrEqual(variant.tolerance);
              runner.destroy();
            }
          } finally {
            await folder.weights.close();
            rt.destroy();
          }

          // greedy generation through the whole engine
          const engine = await Engine.load(dir, {
            forceF32: variant.forceF32,
            kernelProfile: variant.kernelProfile,
            responseCacheEntries: 0,
          });
          try {
            const want = reference.greedy(prompt.slice(0, 16), { maxTokens: 32 });
            const got = await engine.complete({
              prompt: prompt.slice(0, 16),
              maxTokens: 32,
              ignoreEos: true,
              sampling: { temperature: 0 },
            });
            expect(got.tokenIds).toEqual(want.tokens);
            expect(got.finishReason).toBe('length');
          } finally {
            await engine.close();
          }
        },
        COLD_COMPILE_TIMEOUT_MS,
      );
    }
  });
}

describe('gemma3 with its vision tower (model_type gemma3)', () => {
  for (const wrapper of ['language_model.model.', 'model.language_model.'] as const) {
    it(`decoder tensors under ${wrapper}: the text model loads, the vision tensor is left alone, greedy matches the reference`, async () => {
      const dir = join(root, `gemma3-vision-${wrapper}`);
      const generated = await generateTestModel(dir, { architecture: 'gemma3_text', dtype: 'f32', seed: 11, visionWrapper: wrapper });
      expect(generated.spec.modelType).toBe('gemma3');
      const reference = await loadReferenceModel(dir);
      expect(reference.spec.weights.embed.name).toBe(`${wrapper}embed_tokens.weight`);
      const rng = new Rng(wrapper.length);
      const prompt = Array.from({ length: 16 }, () => 1 + rng.int(generated.spec.vocabSize - 1));
      const engine = await Engine.load(dir, { forceF32: true, responseCacheEntries: 0 });
      try {
        const want = reference.greedy(prompt, { maxTokens: 32 });
        const got = await engine.complete({ prompt, maxTokens: 32, ignoreEos: true, sampling: { temperature: 0 } });
        expect(got.tokenIds).toEqual(want.tokens);
      } finally {
        await engine.close();
      }
    });
  }
});
