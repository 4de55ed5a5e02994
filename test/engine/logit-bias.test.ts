/**
 * logit_bias end to end in the engine on the demo model (real weights, the real GPU path):
 * a bias steers greedy decoding, stays with its own request inside a batch, takes part in
 * the response cache's key, and bad values are a typed error naming logit_bias.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { GenerateRequest, TokenEvent } from '../../src/engine/types.js';
import { isAutoGlmError } from '../../src/errors.js';

const DEMO = 'models/demo-stories';
const PROMPT = 'Once upon a time, there was a little';

async function events(engine: Engine, request: GenerateRequest): Promise<TokenEvent[]> {
  const out: TokenEvent[] = [];
  for await (const ev of engine.generate(request)) out.push(ev);
  return out;
}

const ids = (evs: TokenEvent[]): number[] => evs.map((e) => e.tokenId);

describe('logit_bias', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO);
  });
  afterAll(async () => {
    await engine?.close();
  });

  const greedy = (logitBias?: Record<number, number>): GenerateRequest => ({
    prompt: PROMPT,
    maxTokens: 8,
    ignoreEos: true,
    sampling: { temperature: 0, ...(logitBias ? { logitBias } : {}) },
  });

  it('-100 bans a token at every step and +100 forces one', async () => {
    const plain = ids(await events(engine, greedy()));
    const first = plain[0]!;
    const banned = ids(await events(engine, greedy({ [first]: -100 })));
    expect(banned).toHaveLength(8);
    expect(banned).not.toContain(first);
    const forced = ids(await events(engine, greedy({ 65: 100 })));
    expect(forced).toEqual(Array(8).fill(65));
  });

  it('a zero bias changes nothing, and the bias stays with its own request in a batch', async () => {
    const plain = ids(await events(engine, greedy()));
    expect(ids(await events(engine, greedy({ [plain[0]!]: 0 })))).toEqual(plain);
    const [alone, biased] = await Promise.all([events(engine, greedy()), events(engine, greedy({ 66: 100 }))]);
    expect(ids(alone)).toEqual(plain);
    expect(ids(biased)).toEqual(Array(8).fill(66));
  });

  it('is part of the response cache key: the same request with another bias is computed, not replayed', async () => {
    const seeded = (logitBias?: Record<number, number>): GenerateRequest => ({
      prompt: PROMPT,
      maxTokens: 6,
      sampling: { temperature: 0.9, seed: 11, ...(logitBias ? { logitBias } : {}) },
    });
    const a = await events(engine, seeded({ 67: 5 }));
    const again = await events(engine, seeded({ 67: 5 }));
    expect(ids(again)).toEqual(ids(a));
    expect(again.at(-1)!.metrics!.responseCacheHit).toBe(true);
    const other = await events(engine, seeded({ 67: 100 }));
    expect(other.at(-1)!.metrics!.responseCacheHit).toBe(false);
    expect(ids(other)).toEqual(Array(ids(other).length).fill(67));
  });

  it.each([
    [{ '07': 1 }, /"07" is not a token id/],
    [{ '-1': 1 }, /"-1" is not a token id/],
    [{ x: 1 }, /"x" is not a token id/],
    [{ 1e9: 1 }, /not a token id of this model/],
    [{ 5: 101 }, /between -100 and 100/],
    [{ 5: '1' }, /between -100 and 100/],
    [[1, 2], /must be an object/],
    [Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [i, 1])), /at most 1024 tokens/],
  ])('refuses %j with invalid_request naming logit_bias', async (logitBias, message) => {
    const before = engine.stats();
    let err: unknown;
    try {
      await engine.complete({ prompt: PROMPT, maxTokens: 2, sampling: { logitBias: logitBias as never } });
    } catch (e) {
      err = e;
    }
    expect(isAutoGlmError(err, 'invalid_request') && err.param === 'logit_bias', String(err)).toBe(true);
    expect((err as Error).message).toMatch(message);
    expect(engine.stats().kvBlocksUsed).toBe(before.kvBlocksUsed);
  });
});
