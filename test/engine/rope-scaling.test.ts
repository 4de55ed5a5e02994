/**
 * RoPE frequency scaling through the whole loader and GPU forward pass: a Llama folder whose
 * config.json carries Llama-3 style (and linear) rope_scaling, logits at every position of
 * a prompt longer than original_max_position_embeddings against the float64 reference, and
 * proof that the scaling changed them (the same weights without it give other logits), so
 * that a config the engine ignored could not pass.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelFolder } from '../../src/engine/model-folder.js';
import { ModelRunner } from '../../src/engine/runner/model-runner.js';
import { uploadModel } from '../../src/engine/runner/upload-model.js';
import { KernelRuntime } from '../../src/kernels/runtime.js';
import { generateTestModel, type GenerateTestModelOptions } from '../../src/testing/generate-model.js';
import { relativeError } from '../helpers/gpu.js';
import { Rng } from '../helpers/random.js';
import { loadReferenceModel } from '../reference/forward.js';

const PROMPT_TOKENS = 64;

/**
 * Llama 3.1's rope_scaling, with the original context cut to 16 tokens so that the tiny
 * model's head dim (16: wavelengths from 6 to ~19000 positions) has frequencies in all three
 * of its bands: kept (wavelength < 16 / 4), interpolated, and divided by the factor (> 16).
 */
const LLAMA3_SCALING = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 };

let root: string;
let rt: KernelRuntime;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-rope-scaling-'));
  rt = await KernelRuntime.create({ forceF32: true });
});
afterAll(async () => {
  rt?.destroy();
  await rm(root, { recursive: true, force: true });
});

/** Logits of every prompt position from the GPU runner and from the float64 reference. */
async function logits(
  name: string,
  options: GenerateTestModelOptions,
  prompt: number[],
): Promise<{ gpu: Float32Array; ref: Float64Array[] }> {
  const dir = join(root, name);
  await generateTestModel(dir, { architecture: 'llama', dtype: 'f32', seed: 11, ...options });
  const reference = await loadReferenceModel(dir);
  const folder = await loadModelFolder(dir);
  try {
    const model = await uploadModel(rt, folder, { weightDType: 'f32' });
    const runner = new ModelRunner(rt, model, {
      numBlocks: 8,
      blockSize: 16,
      maxRows: 128,
      maxSampleRows: 128,
      countSlots: 1,
      kvDType: 'f32',
      foldNorms: true,
    });
    try {
      const gpu = await runner.logits([{ tokenIds: prompt, startPosition: 0, blockTable: [4, 1, 6, 0] }]);
      return { gpu, ref: reference.forward(prompt, reference.newCache()) };
    } finally {
      runner.destroy();
    }
  } finally {
    await folder.weights.close();
  }
}

describe('rope_scaling in config.json reaches the GPU forward pass', () => {
  const rng = new Rng(5);
  const prompt = Array.from({ length: PROMPT_TOKENS }, () => 1 + rng.int(383));

  for (const [name, scaling] of [
    ['llama3', LLAMA3_SCALING],
    ['linear', { rope_type: 'linear', factor: 4 }],
  ] as const) {
    it(`${name} scaling: logits at every position match the float64 reference and differ from unscaled RoPE`, async () => {
      const scaled = await logits(name, { ropeScaling: scaling }, prompt);
      const plain = await logits(`${name}-plain`, {}, prompt);
      const V = scaled.ref[0]!.length;
      for (let p = 0; p < PROMPT_TOKENS; p += 7) {
        expect(relativeError(scaled.gpu.subarray(p * V, (p + 1) * V), scaled.ref[p]!)).toBeLessThanOrEqual(2e-4);
      }
      // past the first position the rotation angles differ, and so do the logits
      const last = PROMPT_TOKENS - 1;
      expect(relativeError(scaled.gpu.subarray(last * V, (last + 1) * V), plain.ref[last]!)).toBeGreaterThan(1e-3);
      // position 0 rotates by nothing: scaling cannot change it
      expect(relativeError(scaled.gpu.subarray(0, V), plain.ref[0]!)).toBeLessThanOrEqual(2e-4);
    });
  }
});
