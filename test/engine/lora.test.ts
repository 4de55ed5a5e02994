/**
 * Multi-LoRA through the real PEFT reader, the GPU forward pass and the engine, against the
 * float64 reference with each adapter merged into the weights (PEFT's merge_and_unload):
 * rows of the base model and of two different adapters in one step (prompt chunks of 16 rows
 * or more through the GEMM, shorter ones and decode rows through the per-row kernels), folded
 * norms and not, the CPU and GPU kernel profiles,
 * a model with fused gate_up_proj and post-norms (GLM-4), greedy generation, batches that mix
 * adapters, and the prefix and response caches keeping an adapter's KV and answers apart.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { loadLoraAdapter } from '../../src/engine/lora/peft-adapter.js';
import { loraSlotBytes, uploadLoras, writeLoraSlot } from '../../src/engine/lora/lora-weights.js';
import { loadModelFolder } from '../../src/engine/model-folder.js';
import type { Architecture } from '../../src/engine/model/model-spec.js';
import { ModelRunner } from '../../src/engine/runner/model-runner.js';
import { uploadModel } from '../../src/engine/runner/upload-model.js';
import { isAutoGlmError } from '../../src/errors.js';
import { KernelRuntime } from '../../src/kernels/runtime.js';
import { generateLoraAdapter } from '../../src/testing/generate-lora.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { failure, thrown } from '../helpers/caught.js';
import { relativeError } from '../helpers/gpu.js';
import { Rng } from '../helpers/random.js';
import { loadReferenceModel, type ReferenceModel } from '../reference/forward.js';
import { mergeLoraInto } from '../reference/lora-merge.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-lora-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function flatten(rows: Float64Array[]): Float64Array {
  const out = new Float64Array(rows.reduce((n, r) => n + r.length, 0));
  rows.forEach((r, i) => out.set(r, i * r.length));
  return out;
}

/** A model and two adapters: every projection at rank 8, and q/v only at rank 4 (rsLoRA) in layer 1 only. */
async function fixture(arch: Architecture) {
  const dir = await mkdtemp(join(root, `${arch}-`));
  const generated = await generateTestModel(dir, { architecture: arch, dtype: 'f32', seed: 11 });
  const full = join(dir, 'full');
  const sparse = join(dir, 'qv');
  await generateLoraAdapter(full, generated.spec, { rank: 8, seed: 1, bScale: 0.08 });
  await generateLoraAdapter(sparse, generated.spec, {
    rank: 4,
    seed: 2,
    targetModules: ['q_proj', 'v_proj'],
    layers: [1],
    useRslora: true,
    bScale: 0.2,
  });
  const base = await loadReferenceModel(dir);
  const merged = async (adapter: string): Promise<ReferenceModel> => loadReferenceModel(dir, (w) => mergeLoraInto(w, adapter));
  return {
    dir,
    spec: generated.spec,
    adapters: { full, sparse },
    reference: { base, full: await merged(full), sparse: await merged(sparse) },
  };
}

// the GPU kernel profile too, and the default f16 path (f16 weights and KV, adapters in f32)
for (const [arch, kernelProfile, dtype, tolerance] of [
  ['llama', 'auto', 'f32', 1e-4],
  ['glm4', 'auto', 'f32', 1e-4],
  ['llama', 'gpu', 'f32', 1e-4],
  ['llama', 'auto', 'f16', 1e-2],
] as const) {
  describe(`LoRA on ${arch}, ${kernelProfile} kernel profile, ${dtype} weights`, () => {
    it('base, full-rank and q/v-only adapter rows in one step match the merged float64 references (folded norms and not)', async () => {
      const f = await fixture(arch);
      const rt = await KernelRuntime.create({ forceF32: dtype === 'f32', kernelProfile });
      if (rt.preferredDType !== dtype) {
        rt.destroy(); // an adapter without shader-f16 has no f16 path to test
        return;
      }
      const folder = await loadModelFolder(f.dir);
      try {
        const model = await uploadModel(rt, folder, { weightDType: dtype });
        const adapters = [await loadLoraAdapter('full', f.adapters.full, f.spec), await loadLoraAdapter('qv', f.adapters.sparse, f.spec)];
        model.loras = uploadLoras(rt, f.spec, adapters, { capacity: 2, rank: 8, allTargets: false });
        expect(model.loras.rank).toBe(8);
        // the q/v-only adapter leaves layer 0 alone: where neither adapter has anything, no target exists
        if (arch === 'llama') expect(Object.keys(model.loras.layers[0]!).sort()).toEqual(['down', 'gateUp', 'o', 'qkv']);
        const rng = new Rng(arch.length * 31);
        const V = f.spec.vocabSize;
        const prompts = [20, 33, 7].map((n) => Array.from({ length: n }, () => 1 + rng.int(V - 1)));
        for (const foldNorms of [true, false]) {
          const runner = new ModelRunner(rt, model, {
            numBlocks: 12,
            blockSize: 16,
            maxRows: 128,
            maxSampleRows: 128,
            countSlots: 1,
            kvDType: dtype,
            foldNorms,
          });
          try {
            // three sequences, blocks of their own; the middle one on the base model
            const seqs = [
              { tokenIds: prompts[0]!, startPosition: 0, blockTable: [0, 1], adapter: 0 },
              { tokenIds: prompts[1]!, startPosition: 0, blockTable: [2, 3, 4] },
              { tokenIds: prompts[2]!, startPosition: 0, blockTable: [5], adapter: 1 },
            ];
            const got = await runner.logits(seqs);
            const want = [
              f.reference.full.forward(prompts[0]!),
              f.reference.base.forward(prompts[1]!),
              f.reference.sparse.forward(prompts[2]!),
            ];
            let row = 0;
            want.forEach((rows, s) => {
              const part = got.subarray(row * V, (row + rows.length) * V);
              expect(relativeError(part, flatten(rows)), `sequence ${s}, foldNorms ${foldNorms}`).toBeLessThanOrEqual(tolerance);
              row += rows.length;
            });
            // the adapters really move the logits (the comparison is not vacuous)
            const plain = f.reference.base.forward(prompts[0]!);
            expect(relativeError(flatten(plain), flatten(want[0]!))).toBeGreaterThan(0.05);
            expect(relativeError(flatten(f.reference.base.forward(prompts[2]!)), flatten(want[2]!))).toBeGreaterThan(0.01);
            // decode through the cache: one row per sequence, adapters as before
            const next = [3, 5, 9];
            const decode = await runner.logits(seqs.map((s, i) => ({ ...s, tokenIds: [next[i]!], startPosition: prompts[i]!.length })));
            const refs = [f.reference.full, f.reference.base, f.reference.sparse];
            next.forEach((t, i) => {
              const ref = refs[i]!.forward([...prompts[i]!, t]).at(-1)!;
              expect(relativeError(decode.subarray(i * V, (i + 1) * V), ref)).toBeLessThanOrEqual(tolerance);
            });
          } finally {
            runner.destroy();
          }
        }
      } finally {
        await folder.weights.close();
        rt.destroy();
      }
    });
  });
}

it('slots kept for run-time loading take the bytes sizing counts for them (loraSlotBytes); slots without a target refuse an adapter that needs it', async () => {
  const { spec } = await generateTestModel(join(root, 'sizing'), { architecture: 'glm', weights: false });
  const rt = await KernelRuntime.create({ forceF32: true });
  try {
    const loras = uploadLoras(rt, spec, [], { capacity: 3, rank: 8, allTargets: true });
    expect(loras.bytes).toBe(loraSlotBytes(spec, 3, 8, 'f32'));
    expect(loras.bytes).toBeGreaterThan(0);
    // slots made for a q/v-only adapter have no room for one that changes the MLP
    const qv = join(root, 'sizing-qv');
    const all = join(root, 'sizing-all');
    await generateLoraAdapter(qv, spec, { rank: 4, targetModules: ['q_proj', 'v_proj'] });
    await generateLoraAdapter(all, spec, { rank: 4 });
    const narrow = uploadLoras(rt, spec, [await loadLoraAdapter('qv', qv, spec)], { capacity: 2, rank: 4, allTargets: false });
    expect(Object.keys(narrow.layers[0]!)).toEqual(['qkv']);
    const full = await loadLoraAdapter('all', all, spec);
    const e = thrown(() => writeLoraSlot(rt, spec, narrow, 1, full));
    expect(isAutoGlmError(e) && e.param).toBe('lora_path');
    expect((e as Error).message).toContain('no room');
    expect(narrow.layers[0]!.qkv!.gemm[1]).toBeUndefined();
  } finally {
    rt.destroy();
  }
});

describe('LoRA through the engine', () => {
  let f: Awaited<ReturnType<typeof fixture>>;
  let engine: Engine;
  beforeAll(async () => {
    f = await fixture('qwen3');
    engine = await Engine.load(f.dir, {
      forceF32: true,
      loraAdapters: [
        { name: 'full', path: f.adapters.full },
        { name: 'qv', path: f.adapters.sparse },
      ],
    });
  });
  afterAll(async () => {
    await engine?.close();
  });

  const prompt = Array.from({ length: 40 }, (_, i) => (i * 37 + 5) % 300);
  const greedy = { prompt, maxTokens: 24, ignoreEos: true, sampling: { temperature: 0 } } as const;

  it('greedy output with each adapter equals the merged reference, and differs from the base model', async () => {
    expect(engine.loraNames).toEqual(['full', 'qv']);
    const base = await engine.complete(greedy);
    const full = await engine.complete({ ...greedy, lora: 'full' });
    const qv = await engine.complete({ ...greedy, lora: 'qv' });
    expect(base.tokenIds).toEqual(f.reference.base.greedy(prompt, { maxTokens: 24 }).tokens);
    expect(full.tokenIds).toEqual(f.reference.full.greedy(prompt, { maxTokens: 24 }).tokens);
    expect(qv.tokenIds).toEqual(f.reference.sparse.greedy(prompt, { maxTokens: 24 }).tokens);
    expect(full.tokenIds).not.toEqual(base.tokenIds);
  });

  it('concurrent requests on different adapters and none equal their one-at-a-time runs (greedy and seeded)', async () => {
    const loras = [undefined, 'full', 'qv', 'full', undefined, 'qv', 'full', 'qv'];
    const requests = loras.map((lora, i) => ({
      prompt: prompt.slice(i),
      maxTokens: 12 + i,
      ignoreEos: true,
      sampling: i % 2 ? { temperature: 0.9, seed: 100 + i } : { temperature: 0 },
      ...(lora ? { lora } : {}),
    }));
    const alone: Awaited<ReturnType<Engine['complete']>>[] = [];
    for (const r of requests) alone.push(await engine.complete(r));
    const together = await Promise.all(requests.map((r) => engine.complete(r)));
    together.forEach((r, i) => expect(r.tokenIds, `request ${i} (${loras[i] ?? 'base'})`).toEqual(alone[i]!.tokenIds));
    expect(engine.stats().kvBlocksUsed).toBe(0);
  });

  it("an adapter's prompt never reuses the base model's cached KV (nor the reverse), and reuses its own", async () => {
    const shared = Array.from({ length: 64 }, (_, i) => (i * 13 + 1) % 300);
    const run = (lora?: string) =>
      engine.complete({ prompt: shared, maxTokens: 2, ignoreEos: true, sampling: { temperature: 0.7 }, ...(lora ? { lora } : {}) });
    const cached = async (lora?: string) => (await run(lora)).usage.cachedPromptTokens;
    await run();
    expect(await cached('full')).toBe(0);
    expect(await cached('full')).toBe(48);
    expect(await cached('qv')).toBe(0);
    expect(await cached()).toBe(48);
  });

  it('the response cache keeps adapters apart', async () => {
    const a = await engine.complete({ ...greedy, maxTokens: 8 });
    const b = await engine.complete({ ...greedy, maxTokens: 8, lora: 'full' });
    const c = await engine.complete({ ...greedy, maxTokens: 8, lora: 'full' });
    expect(b.tokenIds).not.toEqual(a.tokenIds);
    expect(c.tokenIds).toEqual(b.tokenIds);
    expect(c.metrics?.responseCacheHit).toBe(true);
    expect(b.metrics?.responseCacheHit).toBe(false);
  });

  it('speculative decoding on an adapter gives what plain decoding on it gives (draft rows run with the adapter)', async () => {
    const speculative = await Engine.load(f.dir, {
      forceF32: true,
      speculativeTokens: 4,
      responseCacheEntries: 0,
      loraAdapters: [
        { name: 'full', path: f.adapters.full },
        { name: 'qv', path: f.adapters.sparse },
      ],
    });
    try {
      // a prompt that repeats itself, so that prompt lookup has something to propose
      const repeating = [...prompt.slice(0, 12), ...prompt.slice(0, 12), ...prompt.slice(0, 12)];
      for (const lora of ['full', 'qv']) {
        const request = { prompt: repeating, maxTokens: 32, ignoreEos: true, sampling: { temperature: 0 }, lora };
        expect((await speculative.complete(request)).tokenIds, lora).toEqual((await engine.complete(request)).tokenIds);
      }
      expect(speculative.stats().specDecodeDraftTokens).toBeGreaterThan(0);
    } finally {
      await speculative.close();
    }
  });

  it('an unknown adapter is model_not_found, naming the loaded ones', async () => {
    const e = await failure(() => engine.complete({ ...greedy, lora: 'nope' }));
    expect(isAutoGlmError(e) && e.code).toBe('model_not_found');
    expect((e as Error).message).toContain('full, qv');
  });
});
