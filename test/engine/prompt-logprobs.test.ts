/**
 * Prompt logprobs (vLLM's prompt_logprobs, OpenAI's echo with logprobs) end to end in the
 * engine on the demo model (real weights, the real GPU path), checked against the float64
 * reference forward pass at every prompt position: each prompt token's logprob given the
 * tokens before it, scored over several steps (32 rows a step here), with prefix reuse off for
 * the scored request and nothing changed for the requests batched with it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { GenerateRequest, TokenEvent } from '../../src/engine/types.js';
import { isAutoGlmError } from '../../src/errors.js';
import { failure } from '../helpers/caught.js';
import { DEMO } from '../helpers/demo-stories.js';
import { loadReferenceModel, type ReferenceModel } from '../reference/forward.js';
import { logSoftmax } from '../reference/sampling.js';

// 90+ byte-level tokens: more than two steps of scored rows
const PROMPT = 'Once upon a time, there was a little girl named Sue. She liked to play with her red ball in the park near her house.';

async function events(engine: Engine, request: GenerateRequest): Promise<TokenEvent[]> {
  const out: TokenEvent[] = [];
  for await (const ev of engine.generate(request)) out.push(ev);
  return out;
}

describe('prompt logprobs', () => {
  let engine: Engine;
  let reference: ReferenceModel;
  let promptIds: number[];
  /** log_softmax of the reference logits after each prompt position. */
  let refLogprobs: Float64Array[];

  beforeAll(async () => {
    // 32 scored rows a step: the prompt is scored over three steps (the default takes it in one)
    engine = await Engine.load(DEMO, { promptLogprobsRows: 32 });
    reference = await loadReferenceModel(DEMO);
    promptIds = await engine.tokenize(PROMPT);
    refLogprobs = reference.forward(promptIds).map((l) => logSoftmax(l));
  });
  afterAll(async () => {
    await engine?.close();
  });

  const scored = (promptLogprobs: number, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
    prompt: promptIds,
    maxTokens: 4,
    ignoreEos: true,
    sampling: { temperature: 0 },
    promptLogprobs,
    ...extra,
  });

  it('match the float64 reference at every prompt position, and come on the first event only', async () => {
    expect(promptIds.length).toBeGreaterThan(70);
    const evs = await events(engine, scored(3));
    const got = evs[0]!.promptLogprobs!;
    expect(evs.slice(1).every((e) => e.promptLogprobs === undefined)).toBe(true);
    expect(got).toHaveLength(promptIds.length);
    expect(got[0]).toBeNull();
    let worst = 0;
    for (let p = 1; p < promptIds.length; p++) {
      const entry = got[p]!;
      const ref = refLogprobs[p - 1]!;
      expect(entry.tokenId).toBe(promptIds[p]);
      expect(Number.isFinite(entry.logprob)).toBe(true);
      worst = Math.max(worst, Math.abs(entry.logprob - ref[promptIds[p]!]!));
      expect(entry.topLogprobs).toHaveLength(3);
      // the best alternative is the reference's best wherever the reference is not nearly tied
      const order = Array.from(ref.keys()).sort((a, b) => ref[b]! - ref[a]!);
      if (ref[order[0]!]! - ref[order[1]!]! > 0.05) expect(entry.topLogprobs[0]!.tokenId).toBe(order[0]);
      for (const alt of entry.topLogprobs) expect(Math.abs(alt.logprob - ref[alt.tokenId]!)).toBeLessThan(0.05);
      // its rank, up to tokens the reference has within rounding of it
      const target = ref[promptIds[p]!]!;
      expect(entry.rank).toBeGreaterThanOrEqual(1 + ref.filter((v) => v > target + 0.05).length);
      expect(entry.rank).toBeLessThanOrEqual(1 + ref.filter((v) => v > target - 0.05).length);
      if (entry.rank === 1) expect(entry.topLogprobs[0]!.tokenId).toBe(promptIds[p]);
    }
    // f16 weights and KV on adapters that have them: logprobs within a few hundredths
    expect(worst).toBeLessThan(0.05);
    // a story's next letter is mostly the likeliest, not always
    const ranks = got.slice(1).map((e) => e!.rank);
    expect(ranks.filter((r) => r === 1).length).toBeGreaterThan(ranks.length / 2);
    expect(Math.max(...ranks)).toBeGreaterThan(1);
  });

  it('leave the generated tokens unchanged, and are computed again where the prefix is cached', async () => {
    const plain = await events(engine, scored(0, { promptLogprobs: undefined }));
    const first = await events(engine, scored(0));
    // the prompt's blocks are now cached: a scored request still computes every row
    const again = await events(engine, scored(0));
    expect(first.map((e) => e.tokenId)).toEqual(plain.map((e) => e.tokenId));
    expect(again.map((e) => e.tokenId)).toEqual(plain.map((e) => e.tokenId));
    expect(again.at(-1)!.usage!.cachedPromptTokens).toBe(0);
    expect(again[0]!.promptLogprobs!.slice(1).map((e) => e!.logprob)).toEqual(first[0]!.promptLogprobs!.slice(1).map((e) => e!.logprob));
    expect(first[0]!.promptLogprobs![5]!.topLogprobs).toEqual([]);
  });

  it('of requests batched together are each their own, and the unscored one in the batch is unchanged', async () => {
    const other = await engine.tokenize('The dog ran to the big tree and sat down under it to rest for a while.');
    const alone = [
      await events(engine, scored(1)),
      await events(engine, scored(1, { prompt: other })),
      await events(engine, scored(0, { promptLogprobs: undefined, prompt: other })),
    ];
    const together = await Promise.all([
      events(engine, scored(1)),
      events(engine, scored(1, { prompt: other })),
      events(engine, scored(0, { promptLogprobs: undefined, prompt: other })),
    ]);
    for (let i = 0; i < 3; i++) {
      expect(together[i]!.map((e) => e.tokenId)).toEqual(alone[i]!.map((e) => e.tokenId));
      const lp = (evs: TokenEvent[]) => evs[0]!.promptLogprobs?.map((e) => e && e.tokenId);
      expect(lp(together[i]!)).toEqual(lp(alone[i]!));
    }
    const values = (evs: TokenEvent[]) => evs[0]!.promptLogprobs!.slice(1).map((e) => e!.logprob);
    for (let i = 0; i < 2; i++) {
      values(together[i]!).forEach((v, p) => expect(Math.abs(v - values(alone[i]!)[p]!)).toBeLessThan(1e-3));
    }
    expect(together[2]![0]!.promptLogprobs).toBeUndefined();
  });

  it('are part of the response cache key, and a replay carries them', async () => {
    const request = scored(2, { sampling: { temperature: 0.8, seed: 5 } });
    const first = await engine.complete(request);
    const replay = await engine.complete(request);
    expect(replay.metrics!.responseCacheHit).toBe(true);
    expect(replay.promptLogprobs).toEqual(first.promptLogprobs);
    const without = await engine.complete({ ...request, promptLogprobs: undefined });
    expect(without.metrics!.responseCacheHit).toBe(false);
    expect(without.promptLogprobs).toBeUndefined();
  });

  it.each([[21], [-1], [1.5], ['2']])('refuses prompt_logprobs %j with invalid_request', async (bad) => {
    const e = await failure(() => events(engine, scored(bad as number)));
    expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
    expect((e as { param?: string }).param).toBe('prompt_logprobs');
  });

  it('refuses prompt_logprobs with resumed tokens', async () => {
    const e = await failure(() => events(engine, scored(0, { resumeTokenIds: [65] })));
    expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
    expect(String(e)).toMatch(/resume_token_ids/);
  });

  it('are refused, saying why, by an engine with promptLogprobsRows 0', async () => {
    const off = await Engine.load(DEMO, { promptLogprobsRows: 0 });
    try {
      const e = await failure(() => events(off, scored(0)));
      expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
      expect(String(e)).toMatch(/promptLogprobsRows is 0/);
      expect((await events(off, scored(0, { promptLogprobs: undefined }))).length).toBe(4);
    } finally {
      await off.close();
    }
  });
});
