/**
 * A mixture-of-experts model (qwen3_moe, every layer's MLP six experts of which each token
 * takes two) through the engine: concurrent requests of different lengths (each step's rows
 * routed to different experts) give exactly what each gives alone and what the float64
 * reference gives; a LoRA adapter on the attention projections applies as merged into the
 * weights; one that targets the MLP projections is refused, naming why. The same batching
 * check for the mixtures with a shared expert: Qwen2-MoE's gated one, GLM-4.5's sigmoid
 * router with its choice bias and expert groups.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { loadLoraAdapter } from '../../src/engine/lora/peft-adapter.js';
import type { ModelSpec } from '../../src/engine/model/model-spec.js';
import { isAutoGlmError } from '../../src/errors.js';
import { generateLoraAdapter } from '../../src/testing/generate-lora.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { failure } from '../helpers/caught.js';
import { loadReferenceModel, type ReferenceModel } from '../reference/forward.js';
import { mergeLoraInto } from '../reference/lora-merge.js';

let root: string;
let dir: string;
let engine: Engine;
let base: ReferenceModel;
let adapted: ReferenceModel;
let moeSpec: ModelSpec;
const ADAPTER = 'attn';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-moe-'));
  dir = join(root, 'model');
  const generated = await generateTestModel(dir, { architecture: 'qwen3_moe', dtype: 'f32', seed: 5, experts: 6, expertsPerToken: 2 });
  moeSpec = generated.spec;
  expect(moeSpec.moe!.layers).toEqual([true, true]);
  const adapter = join(root, ADAPTER);
  await generateLoraAdapter(adapter, generated.spec, { rank: 4, seed: 3, bScale: 0.3 });
  base = await loadReferenceModel(dir);
  adapted = await loadReferenceModel(dir, (weights) => mergeLoraInto(weights, adapter));
  engine = await Engine.load(dir, { forceF32: true, responseCacheEntries: 0, loraAdapters: [{ name: ADAPTER, path: adapter }] });
}, 120_000);
afterAll(async () => {
  await engine?.close();
  await rm(root, { recursive: true, force: true });
});

const promptOf = (n: number, offset: number): number[] => Array.from({ length: n }, (_, i) => 1 + ((i * 41 + offset * 13) % 380));

/** Requests of different lengths, alone and then all at once: the same tokens, and the reference's where greedy. */
async function expectBatchIndependent(model: Engine, reference: ReferenceModel): Promise<void> {
  const requests = [3, 17, 40, 9, 64, 25].map((n, i) => ({
    prompt: promptOf(n, i),
    maxTokens: 12,
    ignoreEos: true,
    sampling: i % 2 === 0 ? { temperature: 0 } : { temperature: 0.8, seed: 40 + i },
  }));
  const alone: number[][] = [];
  for (const r of requests) alone.push((await model.complete(r)).tokenIds);
  const together = await Promise.all(requests.map((r) => model.complete(r)));
  together.forEach((r, i) => expect(r.tokenIds, `request ${i}`).toEqual(alone[i]));
  requests.forEach((r, i) => {
    if (i % 2 === 0) expect(alone[i], `request ${i}`).toEqual(reference.greedy(r.prompt, { maxTokens: 12 }).tokens);
  });
  expect(model.stats().kvBlocksUsed).toBe(0);
}

describe('a mixture-of-experts model through the engine', () => {
  it('concurrent requests equal their one-at-a-time runs and the float64 reference (greedy), and seeded sampling is batch-independent', async () => {
    await expectBatchIndependent(engine, base);
  });

  it('an adapter on the attention projections gives the merged reference, not the base model', async () => {
    const prompt = promptOf(30, 7);
    const greedy = { prompt, maxTokens: 16, ignoreEos: true, sampling: { temperature: 0 } } as const;
    const withAdapter = await engine.complete({ ...greedy, lora: ADAPTER });
    expect(withAdapter.tokenIds).toEqual(adapted.greedy(prompt, { maxTokens: 16 }).tokens);
    expect(withAdapter.tokenIds).not.toEqual(base.greedy(prompt, { maxTokens: 16 }).tokens);
  });

  it('an adapter on the MLP projections is refused: the experts take none', async () => {
    // made for a dense Qwen3 of the same sizes (gate_proj / up_proj / down_proj of every layer)
    const denseDir = join(root, 'dense');
    const dense = await generateTestModel(denseDir, { architecture: 'qwen3', dtype: 'f32', seed: 5, weights: false });
    const mlpAdapter = join(root, 'mlp');
    await generateLoraAdapter(mlpAdapter, dense.spec, { rank: 4, targetModules: ['q_proj', 'gate_proj'] });
    const e = await failure(() => loadLoraAdapter('mlp', mlpAdapter, moeSpec));
    expect(isAutoGlmError(e, 'model_load_failed')).toBe(true);
    expect((e as Error).message).toContain('gate_proj');
    expect((e as Error).message).toContain('mixtures of experts');
  });
});

describe('mixtures with a shared expert through the engine', () => {
  it.each([
    ['qwen2_moe', {}],
    ['glm4_moe', { expertGroups: 2, topkGroup: 1 }],
  ] as const)('%s: concurrent requests equal their one-at-a-time runs and the float64 reference', async (architecture, options) => {
    const modelDir = join(root, architecture);
    const generated = await generateTestModel(modelDir, {
      architecture,
      dtype: 'f32',
      seed: 9,
      experts: 8,
      expertsPerToken: 2,
      ...options,
    });
    expect(generated.spec.moe!.sharedIntermediateSize).toBeGreaterThan(0);
    const model = await Engine.load(modelDir, { forceF32: true, responseCacheEntries: 0 });
    try {
      await expectBatchIndependent(model, await loadReferenceModel(modelDir));
    } finally {
      await model.close();
    }
  });
});
