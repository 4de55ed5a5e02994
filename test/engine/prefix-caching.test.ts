import { describe, expect, it } from 'vitest';
import { Scheduler, type SchedulerOptions } from '../../src/engine/scheduler.js';
import { BS, FakeModel, makePrompt, makeScheduler, referenceGenerate, runToCompletion } from './fake-model.js';

function scheduler(options: Partial<SchedulerOptions> = {}): Scheduler {
  return makeScheduler({ maxBatchTokens: 256, maxBatchSequences: 8, ...options });
}

describe('prefix caching', () => {
  it('a second request sharing a 200-token prefix computes only its new tokens, and generates the cold-run tokens', () => {
    const s = scheduler();
    const model = new FakeModel(BS);
    const shared = makePrompt(200, 1);
    const first = [...shared, ...makePrompt(10, 2)];
    const second = [...shared, ...makePrompt(40, 3)];
    s.addRequest({ requestId: 'first', promptTokenIds: first, maxTokens: 5 });
    const a = runToCompletion(s, model).finished.get('first')!;
    expect(a.stats).toMatchObject({ numCachedPromptTokens: 0, numComputedPromptTokens: 210 });

    s.addRequest({ requestId: 'second', promptTokenIds: second, maxTokens: 5 });
    const b = runToCompletion(s, model).finished.get('second')!;
    // 200 = 12 full blocks (192 tokens) + 8: the 12 blocks are reused, the rest computed.
    expect(b.stats).toMatchObject({ numCachedPromptTokens: 192, numComputedPromptTokens: 240 - 192 });
    expect(b.outputTokenIds).toEqual(referenceGenerate(second, 5));
    expect(s.stats()).toMatchObject({ prefixCacheQueries: 210 + 240, prefixCacheHits: 192, kvBlocksUsed: 0 });
  });

  it('always computes the last prompt token, even when the whole prompt is cached', () => {
    const s = scheduler();
    const model = new FakeModel(BS);
    const prompt = makePrompt(64, 5);
    s.addRequest({ requestId: 'a', promptTokenIds: prompt, maxTokens: 3 });
    runToCompletion(s, model);
    s.addRequest({ requestId: 'b', promptTokenIds: prompt, maxTokens: 3 });
    const { finished, outputs } = runToCompletion(s, model);
    expect(finished.get('b')!.stats.numCachedPromptTokens).toBe(48);
    expect(outputs[0]!.sequences[0]).toMatchObject({ startPosition: 48, sample: true });
    expect(outputs[0]!.sequences[0]!.tokenIds).toEqual(prompt.slice(48));
    expect(finished.get('b')!.outputTokenIds).toEqual(referenceGenerate(prompt, 3));
  });

  it('shares blocks by reference between running requests', () => {
    const s = scheduler();
    const model = new FakeModel(BS);
    const shared = makePrompt(48, 9);
    const pa = [...shared, 1, 2, 3];
    const pb = [...shared, 4, 5];
    s.addRequest({ requestId: 'a', promptTokenIds: pa, maxTokens: 20 });
    s.updateFromOutput(model.step(s.schedule()));
    s.addRequest({ requestId: 'b', promptTokenIds: pb, maxTokens: 20 });
    const out = s.schedule();
    const b = out.sequences.find((q) => q.requestId === 'b')!;
    expect(b.startPosition).toBe(48);
    expect(b.blockTable.slice(0, 3)).toEqual(s.blockTable('a').slice(0, 3));
    // 4 blocks for a (51 tokens + 1 decode), 1 new for b: the 3 shared ones count once.
    expect(s.stats().kvBlocksUsed).toBe(5);
    s.updateFromOutput(model.step(out));
    const { finished } = runToCompletion(s, model);
    expect(finished.get('a')!.outputTokenIds).toEqual(referenceGenerate(pa, 20));
    expect(finished.get('b')!.outputTokenIds).toEqual(referenceGenerate(pb, 20));
    expect(s.stats().kvBlocksUsed).toBe(0);
  });

  it('caches blocks filled while decoding, so a multi-turn follow-up reuses the previous answer too', () => {
    const s = scheduler();
    const model = new FakeModel(BS);
    const turn1 = makePrompt(30, 11);
    s.addRequest({ requestId: 't1', promptTokenIds: turn1, maxTokens: 40 });
    const answer = runToCompletion(s, model).finished.get('t1')!.outputTokenIds;
    // KV exists for 30 + 39 = 69 positions: 4 full blocks (64 tokens)
    const turn2 = [...turn1, ...answer, ...makePrompt(12, 12)];
    s.addRequest({ requestId: 't2', promptTokenIds: turn2, maxTokens: 4 });
    const f = runToCompletion(s, model).finished.get('t2')!;
    expect(f.stats.numCachedPromptTokens).toBe(64);
    expect(f.outputTokenIds).toEqual(referenceGenerate(turn2, 4));
  });

  it('recomputes a preempted request mostly from its own cached blocks', () => {
    const s = scheduler({ numBlocks: 10, maxBatchTokens: 64 });
    const model = new FakeModel(BS);
    const pa = makePrompt(40, 21);
    const pb = makePrompt(40, 22);
    s.addRequest({ requestId: 'a', promptTokenIds: pa, maxTokens: 50 });
    s.addRequest({ requestId: 'b', promptTokenIds: pb, maxTokens: 50 });
    const hitsBefore: number[] = [];
    const { finished } = runToCompletion(s, model, {
      afterStep: (out) => {
        if (out.preempted.length > 0) hitsBefore.push(s.stats().prefixCacheHits);
      },
    });
    expect(hitsBefore.length).toBeGreaterThan(0);
    expect(s.stats().prefixCacheHits).toBeGreaterThan(hitsBefore[0]!);
    expect(finished.get('a')!.outputTokenIds).toEqual(referenceGenerate(pa, 50));
    expect(finished.get('b')!.outputTokenIds).toEqual(referenceGenerate(pb, 50));
    expect(s.stats()).toMatchObject({ kvBlocksUsed: 0, kvBlocksFree: 10 });
  });

  it('evicts least recently freed cached blocks first when the pool needs room', () => {
    const s = scheduler({ numBlocks: 8 });
    const model = new FakeModel(BS);
    const old = makePrompt(33, 31); // 2 full blocks cached once done
    const recent = makePrompt(33, 32);
    for (const [id, p] of [
      ['old', old],
      ['recent', recent],
    ] as const) {
      s.addRequest({ requestId: id, promptTokenIds: p, maxTokens: 1 });
      runToCompletion(s, model);
    }
    expect(s.stats().kvBlocksCached).toBe(4);
    // Needs 5 blocks: the 4 never-hashed free blocks go first, then the tail block of 'old'.
    s.addRequest({ requestId: 'big', promptTokenIds: makePrompt(80, 33), maxTokens: 1 });
    runToCompletion(s, model);
    expect(s.stats().cacheEvictions).toBe(1);
    // 'recent' kept both blocks; its one new block evicts 'old''s first block, the LRU one.
    s.addRequest({ requestId: 'recent2', promptTokenIds: recent, maxTokens: 1 });
    expect(runToCompletion(s, model).finished.get('recent2')!.stats.numCachedPromptTokens).toBe(32);
    expect(s.stats().cacheEvictions).toBe(2);
    s.addRequest({ requestId: 'old2', promptTokenIds: old, maxTokens: 1 });
    const f = runToCompletion(s, model).finished.get('old2')!;
    expect(f.stats.numCachedPromptTokens).toBe(0);
    expect(f.outputTokenIds).toEqual(referenceGenerate(old, 1));
  });

  it('reuses nothing with prefix caching off', () => {
    const s = scheduler({ enablePrefixCaching: false });
    const model = new FakeModel(BS);
    const prompt = makePrompt(100, 41);
    for (const id of ['a', 'b']) {
      s.addRequest({ requestId: id, promptTokenIds: prompt, maxTokens: 2 });
      const f = runToCompletion(s, model).finished.get(id)!;
      expect(f.stats).toMatchObject({ numCachedPromptTokens: 0, numComputedPromptTokens: 100 });
    }
    expect(s.stats()).toMatchObject({ prefixCacheHits: 0, kvBlocksCached: 0 });
  });
});
