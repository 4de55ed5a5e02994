/**
 * Continuous batching on the real GPU path (demo-stories, a trained model, so outputs are
 * long and varied): batched equals one-at-a-time, prefix reuse, preemption under memory
 * pressure, cancellation. The scheduler's own logic is tested without a GPU in
 * scheduler.test.ts; here the question is whether the GPU step honours its plans.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { GenerateRequest } from '../../src/engine/types.js';

const DEMO = 'models/demo-stories';
const NAMES = [
  'a cat',
  'Lily',
  'a dog',
  'Tom',
  'a frog',
  'Sue',
  'a bird',
  'Max',
  'a fish',
  'Ben',
  'a fox',
  'Mia',
  'a bear',
  'Sam',
  'a duck',
  'Anna',
];

function request(i: number, sampling: GenerateRequest['sampling']): GenerateRequest {
  // different prompt lengths: some ask twice
  const ask = `Tell me a story about ${NAMES[i]}.`;
  return { prompt: [{ role: 'user', content: i % 3 === 0 ? `${ask} ${ask}` : ask }], sampling, maxTokens: 24 + (i % 5) * 8 };
}

describe('continuous batching', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO, { responseCacheEntries: 0 });
  });
  afterAll(async () => {
    await engine?.close();
  });

  for (const [name, sampling] of [
    ['greedy', { temperature: 0 }],
    ['seeded sampling', { temperature: 0.9, topP: 0.95, seed: 1234 }],
  ] as const) {
    it(`16 concurrent requests equal one-at-a-time runs (${name})`, async () => {
      const sequential = [];
      for (let i = 0; i < 16; i++) sequential.push(await engine.complete(request(i, sampling)));
      const concurrent = await Promise.all(Array.from({ length: 16 }, (_, i) => engine.complete(request(i, sampling))));
      for (let i = 0; i < 16; i++) {
        expect(concurrent[i]!.tokenIds).toEqual(sequential[i]!.tokenIds);
        expect(concurrent[i]!.text).toBe(sequential[i]!.text);
      }
      // the outputs really differ between prompts (the comparison is not vacuous)
      expect(new Set(sequential.map((r) => r.text)).size).toBeGreaterThan(8);
      expect(engine.stats().kvBlocksUsed).toBe(0);
    });
  }

  it('with the GPU kernel profile too, 16 concurrent greedy requests equal one-at-a-time runs', async () => {
    // the tilings and attention kernels a real GPU runs (split-K GEMV, workgroup-reduction
    // norms, the flash and split-K decode attention) on many sequences at once; f32, so that
    // the GEMV's and the GEMM's different summation orders stay far below any near-tie
    const gpu = await Engine.load(DEMO, { responseCacheEntries: 0, kernelProfile: 'gpu', forceF32: true });
    try {
      const sampling = { temperature: 0 };
      const sequential = [];
      for (let i = 0; i < 16; i++) sequential.push(await gpu.complete(request(i, sampling)));
      const concurrent = await Promise.all(Array.from({ length: 16 }, (_, i) => gpu.complete(request(i, sampling))));
      for (let i = 0; i < 16; i++) expect(concurrent[i]!.tokenIds).toEqual(sequential[i]!.tokenIds);
      expect(new Set(sequential.map((r) => r.text)).size).toBeGreaterThan(8);
      expect(gpu.stats().kvBlocksUsed).toBe(0);
    } finally {
      await gpu.close();
    }
  });

  it('prefills a prompt longer than the step token budget in chunks (steps that sample nothing) to what one step gives', async () => {
    const prompt = 'Once upon a time there was a little cat who liked to play in the garden. '.repeat(5);
    const greedy = { prompt, sampling: { temperature: 0 }, maxTokens: 24 } as const;
    const whole = await engine.complete(greedy);
    expect(whole.usage.promptTokens).toBeGreaterThan(300);
    const chunked = await Engine.load(DEMO, { responseCacheEntries: 0, maxBatchTokens: 64 });
    try {
      const got = await chunked.complete(greedy);
      expect(got.tokenIds).toEqual(whole.tokenIds);
      const stats = chunked.stats();
      // every 64-row chunk of the prompt a step of its own, only the last one sampling
      expect(stats.prefillSteps).toBe(Math.ceil(whole.usage.promptTokens / 64));
      expect(stats.prefillStepRows).toBe(whole.usage.promptTokens);
      expect(stats.kvBlocksUsed).toBe(0);
    } finally {
      await chunked.close();
    }
  });

  it('reuses a shared 200-token prefix and computes only the new tokens', async () => {
    const system = 'You are a storyteller for small children. '.repeat(5).slice(0, 200);
    const first = await engine.complete({ prompt: system + 'Tell me a story about a cat.', sampling: { temperature: 0 }, maxTokens: 16 });
    const before = engine.stats();
    const hitsBefore = before.prefixCacheHits;
    const second = await engine.complete({ prompt: system + 'Tell me a story about Lily.', sampling: { temperature: 0 }, maxTokens: 16 });
    // a cold engine gives the same tokens for the second prompt
    const cold = await Engine.load(DEMO, { responseCacheEntries: 0 });
    try {
      const reference = await cold.complete({
        prompt: system + 'Tell me a story about Lily.',
        sampling: { temperature: 0 },
        maxTokens: 16,
      });
      expect(second.tokenIds).toEqual(reference.tokenIds);
      expect(reference.usage.cachedPromptTokens).toBe(0);
    } finally {
      await cold.close();
    }
    // every full 16-token block of the shared prefix came from the cache; only the rest was computed
    const a = await engine.tokenize(system + 'Tell me a story about a cat.');
    const b = await engine.tokenize(system + 'Tell me a story about Lily.');
    let shared = 0;
    while (a[shared] === b[shared]) shared++;
    expect(shared).toBeGreaterThanOrEqual(200);
    expect(first.usage.promptTokens).toBe(a.length);
    expect(second.usage.cachedPromptTokens).toBe(Math.floor(shared / 16) * 16);
    const after = engine.stats();
    expect(after.prefixCacheHits - hitsBefore).toBe(Math.floor(shared / 16) * 16);
    // the forward steps computed exactly the uncached prompt rows, then one row per decode step
    // (16 tokens: the first comes from the prefill step)
    expect(after.prefillStepRows - before.prefillStepRows).toBe(b.length - Math.floor(shared / 16) * 16);
    expect(after.decodeSteps - before.decodeSteps).toBe(15);
    expect(after.decodeStepRows - before.decodeStepRows).toBe(15);
    expect(after.decodeStepMsSum).toBeGreaterThan(before.decodeStepMsSum);
  });

  it('finishes every request correctly when the KV budget forces preemption, and frees every block', async () => {
    const reference = [];
    for (let i = 0; i < 8; i++) reference.push(await engine.complete(request(i, { temperature: 0 })));
    // 2 KB per token (4 layers x 2 x 4 kv heads x 32 x f16): 40 blocks of 16 tokens,
    // far less than 8 requests of ~80 tokens need at once, but one full context (512) fits
    const bytesPerToken = 4 * 2 * 4 * 32 * (engine.rt.preferredDType === 'f16' ? 2 : 4);
    const small = await Engine.load(DEMO, { responseCacheEntries: 0, kvCacheBytes: 40 * 16 * bytesPerToken, maxContextTokens: 512 });
    try {
      const got = await Promise.all(Array.from({ length: 8 }, (_, i) => small.complete(request(i, { temperature: 0 }))));
      for (let i = 0; i < 8; i++) expect(got[i]!.tokenIds).toEqual(reference[i]!.tokenIds);
      const stats = small.stats();
      expect(stats.kvBlocksTotal).toBe(40);
      expect(stats.preemptions).toBeGreaterThan(0);
      expect(stats.kvBlocksUsed).toBe(0);
      // each request reports its own preemptions, and they add up to the engine's
      expect(got.reduce((n, r) => n + r.metrics!.preemptions, 0)).toBe(stats.preemptions);
    } finally {
      await small.close();
    }
  });

  it('cancelling a stream frees its blocks at once, while another request runs on undisturbed', async () => {
    const otherRequest = { ...request(1, { temperature: 0 }), maxTokens: 48, ignoreEos: true };
    const reference = await engine.complete(otherRequest);
    // a plain-text prompt shares no full block with the chat-templated other one, so every
    // block the victim holds is its own
    const victimPrompt = 'Once upon a time, in a small town by the sea, there lived a girl';
    const victimPromptTokens = (await engine.tokenize(victimPrompt)).length;
    let otherDone = false;
    const other = engine.complete(otherRequest).then((r) => {
      otherDone = true;
      return r;
    });
    const controller = new AbortController();
    let atCancel: { before: ReturnType<Engine['stats']>; after: ReturnType<Engine['stats']>; otherDone: boolean } | undefined;
    let victimEvents = 0;
    for await (const ev of engine.generate({ prompt: victimPrompt, maxTokens: 200, ignoreEos: true, signal: controller.signal })) {
      expect(ev.finishReason).toBeUndefined();
      if (++victimEvents === 5) {
        const before = engine.stats();
        controller.abort(); // cancels synchronously: no step can run between the two reads
        atCancel = { before, after: engine.stats(), otherDone };
      }
    }
    // the stream ended after the abort (events already buffered still arrive), without a final event
    expect(victimEvents).toBeGreaterThanOrEqual(5);
    const { before, after } = atCancel!;
    expect(atCancel!.otherDone).toBe(false);
    expect([before.running, after.running]).toEqual([2, 1]);
    // the victim held at least its prompt and 4 generated tokens' KV; all of it is free now
    const freed = before.kvBlocksUsed - after.kvBlocksUsed;
    expect(freed).toBeGreaterThanOrEqual(Math.ceil((victimPromptTokens + 4) / 16));
    expect(after.kvBlocksFree - before.kvBlocksFree).toBe(freed);
    // the other request still holds its own blocks, and finishes exactly as it would alone
    expect(after.kvBlocksUsed).toBeGreaterThan(0);
    const result = await other;
    expect(result.tokenIds).toEqual(reference.tokenIds);
    expect(result.tokenIds).toHaveLength(48);
    expect(engine.stats().running).toBe(0);
    expect(engine.stats().kvBlocksUsed).toBe(0);
  });

  it('breaking out of the iterator cancels the request', async () => {
    for await (const ev of engine.generate({ ...request(2, { temperature: 0 }), maxTokens: 100 })) {
      if (ev.index === 2) break;
    }
    expect(engine.stats().running + engine.stats().waiting).toBe(0);
    expect(engine.stats().kvBlocksUsed).toBe(0);
  });
});
