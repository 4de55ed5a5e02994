/**
 * min_tokens end to end in the engine on the demo model (real weights, the real GPU path):
 * EOS and stop token ids cannot end the output before min_tokens, the tokens before the
 * natural end are unchanged (only the banned logits move), stop strings count only after
 * min_tokens, the ban stays with its own request in a batch and leaves with min_tokens, and
 * bad values are a typed error naming min_tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { GenerateRequest, TokenEvent } from '../../src/engine/types.js';
import { isAutoGlmError } from '../../src/errors.js';
import { failure } from '../helpers/caught.js';
import { CAT, CAT_PROMPT, DEMO } from '../helpers/demo-stories.js';

async function events(engine: Engine, request: GenerateRequest): Promise<TokenEvent[]> {
  const out: TokenEvent[] = [];
  for await (const ev of engine.generate(request)) out.push(ev);
  return out;
}

const ids = (evs: TokenEvent[]): number[] => evs.map((e) => e.tokenId);
const text = (evs: TokenEvent[]): string => evs.map((e) => e.text).join('');

describe('min_tokens', () => {
  let engine: Engine;
  /** The greedy cat story, ended by EOS: its ids, the EOS id last. */
  let natural: TokenEvent[];
  beforeAll(async () => {
    engine = await Engine.load(DEMO, { responseCacheEntries: 0 });
    natural = await events(engine, story({}));
  });
  afterAll(async () => {
    await engine?.close();
  });

  const story = (extra: Partial<GenerateRequest>): GenerateRequest => ({
    prompt: [{ role: 'user', content: CAT_PROMPT }],
    maxTokens: 400,
    sampling: { temperature: 0 },
    ...extra,
  });

  it('the story ends by itself with EOS (the baseline the other tests lean on)', () => {
    expect(text(natural)).toBe(CAT);
    expect(natural.at(-1)!.finishReason).toBe('stop');
    expect(natural.at(-1)!.text).toBe('');
  });

  it('EOS cannot end the output before min_tokens; the tokens before it are the same', async () => {
    const eos = natural.at(-1)!.tokenId;
    const n = natural.length - 1; // story tokens before EOS
    const longer = await events(engine, story({ minTokens: n + 12, maxTokens: n + 12 }));
    expect(longer).toHaveLength(n + 12);
    expect(longer.at(-1)!.finishReason).toBe('length');
    expect(ids(longer).slice(0, n)).toEqual(ids(natural).slice(0, n));
    expect(ids(longer)).not.toContain(eos);
    expect(text(longer).startsWith(CAT)).toBe(true);
    expect(text(longer).length).toBeGreaterThan(CAT.length);
  });

  it('min_tokens at or below the natural length changes nothing', async () => {
    const n = natural.length;
    expect(ids(await events(engine, story({ minTokens: n - 1 })))).toEqual(ids(natural));
    expect(ids(await events(engine, story({ minTokens: 0 })))).toEqual(ids(natural));
  });

  it('bans the stop token ids too, and only until min_tokens', async () => {
    // the story's 5th token as a stop id: without min_tokens it ends the output there
    const stopId = natural[4]!.tokenId;
    const cut = await events(engine, story({ stopTokenIds: [stopId] }));
    expect(cut.at(-1)!.finishReason).toBe('stop');
    const firstAt = ids(natural).indexOf(stopId);
    expect(cut).toHaveLength(firstAt + 1);
    const held = await events(engine, story({ stopTokenIds: [stopId], minTokens: 10 }));
    expect(ids(held).slice(0, 10)).not.toContain(stopId);
    // from min_tokens on the stop id ends the output again, if it comes
    const after = ids(held).slice(10);
    if (after.includes(stopId)) expect(held.at(-1)!.tokenId).toBe(stopId);
    expect(held.at(-1)!.finishReason).toBe('stop');
  });

  it('stop strings are looked for only after min_tokens', async () => {
    // 'Lucy' first appears in the first sentence and many times after
    const plain = await events(engine, story({ stop: ['Lucy'] }));
    expect(text(plain)).toBe('Once upon a time, there was a curious cow named ');
    const firstEnd = plain.length;
    const later = await events(engine, story({ stop: ['Lucy'], minTokens: firstEnd + 2 }));
    const t = text(later);
    expect(later.at(-1)!.finishReason).toBe('stop');
    expect(t).toContain('named Lucy');
    expect(t.endsWith('Lucy')).toBe(false);
    expect(CAT.startsWith(t)).toBe(true);
    expect(t.length).toBeGreaterThan(text(plain).length);
  });

  it('a stop string that begins before min_tokens and ends at or after it still ends the output (vLLM)', async () => {
    const plain = await events(engine, story({ stop: ['Lucy'] }));
    // the token that completes the first 'Lucy' is the last one plain generated
    const straddling = await events(engine, story({ stop: ['Lucy'], minTokens: plain.length - 1 }));
    expect(text(straddling)).toBe(text(plain));
    expect(straddling.at(-1)!.finishReason).toBe('stop');
  });

  it('stays with its own request in a batch', async () => {
    const n = natural.length - 1;
    const [alone, held] = await Promise.all([events(engine, story({})), events(engine, story({ minTokens: n + 5, maxTokens: n + 5 }))]);
    expect(ids(alone)).toEqual(ids(natural));
    expect(held).toHaveLength(n + 5);
    expect(ids(held)).not.toContain(natural.at(-1)!.tokenId);
  });

  it.each([
    [{ minTokens: -1 }, 'non-negative integer'],
    [{ minTokens: 1.5 }, 'non-negative integer'],
    [{ minTokens: '3' as unknown as number }, 'non-negative integer'],
    [{ minTokens: 9, maxTokens: 8 }, 'must not be greater than max_tokens'],
    [{ minTokens: 5000, maxTokens: undefined }, 'the context leaves'],
    [{ minTokens: 3, responseFormat: { type: 'json_object' as const } }, 'response_format'],
  ])('refuses %j naming min_tokens', async (extra, message) => {
    const caught = await failure(() => events(engine, story(extra)));
    expect(isAutoGlmError(caught, 'invalid_request')).toBe(true);
    expect((caught as { param?: string }).param).toBe('min_tokens');
    expect((caught as Error).message).toContain(message);
  });
});
