/**
 * The real trained default model (models/demo-stories) through the whole GPU path: its
 * README gives the greedy output of a float64 forward pass on these weights; the engine in
 * f16 or f32 must reproduce it (a wrong RoPE, norm or attention detail derails it at once).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { CAT, DEMO, LILY } from '../helpers/demo-stories.js';

describe('demo-stories on the GPU', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO);
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('reproduces the README greedy stories', async () => {
    const [cat, lily] = await Promise.all([
      engine.complete({ prompt: [{ role: 'user', content: 'Tell me a story about a cat.' }], sampling: { temperature: 0 } }),
      engine.complete({ prompt: [{ role: 'user', content: 'Tell me a story about Lily.' }], sampling: { temperature: 0 } }),
    ]);
    expect(cat.text).toBe(CAT);
    expect(cat.finishReason).toBe('stop');
    expect(lily.text).toBe(LILY);
  });

  it('warms up without leaving a trace: counters from zero, no blocks held, no cached answers, same output', async () => {
    const cat = { prompt: [{ role: 'user' as const, content: 'Tell me a story about a cat.' }], sampling: { temperature: 0 } };
    expect(engine.stats().finishedRequests).toBeGreaterThan(0); // the test above ran
    const ms = await engine.warmUp();
    expect(ms).toBeGreaterThan(0);
    const s = engine.stats();
    expect([s.finishedRequests, s.promptTokens, s.generationTokens, s.timeToFirstTokenMsSum]).toEqual([0, 0, 0, 0]);
    expect([s.responseCacheHits, s.responseCacheMisses, s.prefixCacheQueries, s.prefixCacheHits]).toEqual([0, 0, 0, 0]);
    expect([s.running, s.waiting, s.kvBlocksUsed]).toEqual([0, 0, 0]);
    // the cat story was answered before the warm-up; the warm-up emptied the response cache,
    // so this one is computed again (a miss) and must still be the README's text
    expect((await engine.complete(cat)).text).toBe(CAT);
    const after = engine.stats();
    expect([after.finishedRequests, after.responseCacheMisses, after.responseCacheHits]).toEqual([1, 1, 0]);
  });
});
