/**
 * LoRA adapters loaded and unloaded while the engine serves (Engine.loadLora / unloadLora,
 * maxLoras slots beyond the adapters given at load): outputs against the float64 reference
 * with the adapter merged, a reused name that must not meet the previous adapter's cached KV
 * or answers, an unload while a request on the adapter still runs, and the refusals.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { DispatchProfiler } from '../../src/kernels/dispatch-profiler.js';
import { isAutoGlmError } from '../../src/errors.js';
import { generateLoraAdapter } from '../../src/testing/generate-lora.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { failure } from '../helpers/caught.js';
import { loadReferenceModel, type ReferenceModel } from '../reference/forward.js';
import { mergeLoraInto } from '../reference/lora-merge.js';

let root: string;
let engine: Engine;
let numLayers = 0;
const paths = { full: '', qv: '', other: '', wide: '' };
const reference: Record<'base' | 'full' | 'qv' | 'other', ReferenceModel | undefined> = {
  base: undefined,
  full: undefined,
  qv: undefined,
  other: undefined,
};

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-lora-runtime-'));
  const dir = join(root, 'model');
  const { spec } = await generateTestModel(dir, { architecture: 'qwen3', dtype: 'f32', seed: 5 });
  numLayers = spec.numLayers;
  for (const name of Object.keys(paths) as (keyof typeof paths)[]) paths[name] = join(root, name);
  await generateLoraAdapter(paths.full, spec, { rank: 8, seed: 1, bScale: 0.08 });
  await generateLoraAdapter(paths.qv, spec, { rank: 4, seed: 2, targetModules: ['q_proj', 'v_proj'], bScale: 0.2 });
  await generateLoraAdapter(paths.other, spec, { rank: 8, seed: 3, targetModules: ['o_proj', 'down_proj'], bScale: 0.1 });
  await generateLoraAdapter(paths.wide, spec, { rank: 16, seed: 4 });
  reference.base = await loadReferenceModel(dir);
  for (const name of ['full', 'qv', 'other'] as const)
    reference[name] = await loadReferenceModel(dir, (w) => mergeLoraInto(w, paths[name]));
  // one adapter given at load, a second slot for run time; the given one changes only q, k,
  // v and the MLP's... every projection, so slots for all of them exist anyway (maxLoras > given)
  engine = await Engine.load(dir, { forceF32: true, loraAdapters: [{ name: 'full', path: paths.full }], maxLoras: 2, maxLoraRank: 8 });
});
afterAll(async () => {
  await engine?.close();
  await rm(root, { recursive: true, force: true });
});

const prompt = Array.from({ length: 40 }, (_, i) => (i * 29 + 7) % 300);
const greedy = (lora?: string) =>
  engine.complete({ prompt, maxTokens: 16, ignoreEos: true, sampling: { temperature: 0 }, ...(lora ? { lora } : {}) });
const want = (name: keyof typeof reference) => reference[name]!.greedy(prompt, { maxTokens: 16 }).tokens;

async function code(run: () => unknown): Promise<{ code: string | undefined; param: string | undefined; message: string }> {
  const e = await failure(async () => run());
  return {
    code: isAutoGlmError(e) ? e.code : undefined,
    param: isAutoGlmError(e) ? e.param : undefined,
    message: (e as Error)?.message ?? '',
  };
}

describe('LoRA adapters at run time', () => {
  it('an adapter loaded into the free slot serves its merged model; the slots then refuse a third', async () => {
    expect(engine.loraNames).toEqual(['full']);
    await engine.loadLora('qv', paths.qv);
    expect(engine.loraNames).toEqual(['full', 'qv']);
    expect((await greedy('qv')).tokenIds).toEqual(want('qv'));
    expect((await greedy('full')).tokenIds).toEqual(want('full'));
    expect((await greedy()).tokenIds).toEqual(want('base'));
    const third = await code(() => engine.loadLora('third', paths.other));
    expect([third.code, third.param]).toEqual(['invalid_request', 'lora_name']);
    expect(third.message).toContain('All 2 LoRA slots are in use');
    expect(engine.loraNames).toEqual(['full', 'qv']);
  });

  it("a step runs the LoRA kernels only for the projections its rows' adapters change", async ({ skip }) => {
    if (!engine.rt.ctx.features.timestampQuery) return skip('counting dispatches needs the timestamp-query feature');
    // per decode or short-prompt step (per-row kernels): shrink dispatches per layer
    let promptSeed = 0;
    const shrinksPerLayerStep = async (lora: string): Promise<number> => {
      const profiler = new DispatchProfiler(engine.rt);
      engine.rt.profiler = profiler;
      try {
        // a prompt no other request used: no answer from the response cache
        const short = Array.from({ length: 5 }, (_, i) => (i * 37 + 11 * ++promptSeed) % 300);
        await engine.complete({ prompt: short, maxTokens: 4, ignoreEos: true, sampling: { temperature: 0 }, lora });
      } finally {
        engine.rt.profiler = null;
      }
      const count = new Map((await profiler.read()).map((t) => [t.kernel, t.dispatches]));
      profiler.destroy();
      return (count.get('lora-shrink') ?? 0) / (count.get('embedding') ?? NaN) / numLayers;
    };
    expect(engine.loraNames).toContain('qv');
    expect(await shrinksPerLayerStep('qv')).toBe(1); // q|k|v only
    expect(await shrinksPerLayerStep('full')).toBe(4); // q|k|v, o, gate|up, down
  });

  it('an unloaded name is model_not_found; loaded again with other weights it serves those, never the old KV or answers', async () => {
    const long = Array.from({ length: 64 }, (_, i) => (i * 11 + 3) % 300);
    const seeded = { prompt: long, maxTokens: 6, ignoreEos: true, sampling: { temperature: 0 } };
    await engine.complete({ ...seeded, lora: 'qv' }); // its blocks and its answer are cached now
    engine.unloadLora('qv');
    expect(engine.loraNames).toEqual(['full']);
    expect((await code(() => greedy('qv'))).code).toBe('model_not_found');
    expect((await code(() => engine.unloadLora('qv'))).code).toBe('model_not_found');
    await engine.loadLora('qv', paths.other);
    const again = await engine.complete({ ...seeded, lora: 'qv' });
    expect(again.usage.cachedPromptTokens).toBe(0);
    expect(again.metrics?.responseCacheHit).toBe(false);
    expect(again.tokenIds).toEqual(reference.other!.greedy(long, { maxTokens: 6 }).tokens);
    expect((await greedy('qv')).tokenIds).toEqual(want('other'));
  });

  it('unloading an adapter lets its running request finish on it; its slot is free only after that', async () => {
    const tokens: number[] = [];
    const stream = engine.generate({ prompt, maxTokens: 48, ignoreEos: true, sampling: { temperature: 0 }, lora: 'full' });
    let unloaded = false;
    let refusedWhileRunning = '';
    for await (const ev of stream) {
      tokens.push(ev.tokenId);
      if (!unloaded) {
        unloaded = true;
        engine.unloadLora('full');
        refusedWhileRunning = (await code(() => engine.loadLora('late', paths.qv))).message;
        expect((await code(() => greedy('full'))).code).toBe('model_not_found');
      }
    }
    expect(refusedWhileRunning).toContain('still running');
    expect(tokens).toEqual(reference.full!.greedy(prompt, { maxTokens: 48 }).tokens);
    await engine.loadLora('late', paths.qv);
    expect((await greedy('late')).tokenIds).toEqual(want('qv'));
    expect(engine.stats().kvBlocksUsed).toBe(0);
  });

  it('the warm-up of an engine with only empty slots runs the adapter kernels on a stand-in and leaves the slot free', async () => {
    const fresh = await Engine.load(join(root, 'model'), { forceF32: true, maxLoras: 1, maxLoraRank: 8, responseCacheEntries: 0 });
    try {
      await fresh.warmUp();
      expect(fresh.loraNames).toEqual([]);
      expect(fresh.stats().loraRequests).toEqual({ running: [], waiting: [], maxLoras: 1 });
      await fresh.loadLora('qv', paths.qv);
      const run = (lora?: string) =>
        fresh.complete({ prompt, maxTokens: 16, ignoreEos: true, sampling: { temperature: 0 }, ...(lora ? { lora } : {}) });
      expect((await run('qv')).tokenIds).toEqual(want('qv'));
      expect((await run()).tokenIds).toEqual(want('base'));
    } finally {
      await fresh.close();
    }
  });

  it('refuses a rank above the slots, a bad path or name, and the base model name', async () => {
    engine.unloadLora('late');
    const wide = await code(() => engine.loadLora('wide', paths.wide));
    expect([wide.code, wide.param]).toEqual(['invalid_request', 'lora_path']);
    expect(wide.message).toContain('rank 16');
    const missing = await code(() => engine.loadLora('missing', join(root, 'nowhere')));
    expect([missing.code, missing.param]).toEqual(['invalid_request', 'lora_path']);
    expect((await code(() => engine.loadLora('has space', paths.qv))).param).toBe('lora_name');
    expect((await code(() => engine.loadLora('model', paths.qv))).message).toContain("base model's name");
    // none of the refused loads kept a slot
    await engine.loadLora('qv2', paths.qv);
    expect([...engine.loraNames].sort()).toEqual(['qv', 'qv2']);
  });
});
