/**
 * Speculative decoding by prompt lookup, end to end on the demo model (real weights, the real
 * GPU path): an engine with `speculativeTokens` must give exactly what one without gives,
 * token for token with the same logprobs, greedy and seeded, alone and batched, through stop
 * strings, EOS and maxTokens that fall inside a run of kept drafts; requests whose sampling
 * depends on earlier tokens (penalties, min_tokens, a grammar) never draft. The prompt that
 * makes drafts pay repeats a story the model then tells again, as a copy-heavy task would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { RunnerSequence } from '../../src/engine/runner/model-runner.js';
import type { CompletionResult, EngineStats, GenerateRequest, TokenEvent } from '../../src/engine/types.js';
import { isAutoGlmError } from '../../src/errors.js';
import { failure } from '../helpers/caught.js';
import { DEMO, LILY, LILY_PROMPT } from '../helpers/demo-stories.js';

const EOS = 257;

describe('speculative decoding (prompt lookup)', () => {
  let plain: Engine;
  let spec: Engine;
  /** The chat prompt, Lily's story and EOS, and the chat prompt again: the model tells the story a second time. */
  let copyPrompt: number[];

  beforeAll(async () => {
    // no response cache: a repeated greedy request must run again, not replay
    plain = await Engine.load(DEMO, { responseCacheEntries: 0 });
    spec = await Engine.load(DEMO, { speculativeTokens: 4, responseCacheEntries: 0 });
    const chat = await plain.tokenize([{ role: 'user', content: LILY_PROMPT }]);
    copyPrompt = [...chat, ...(await plain.tokenize(LILY)), EOS, ...chat];
  });
  afterAll(async () => {
    await Promise.all([plain?.close(), spec?.close()]);
  });

  /** The spec engine's counters over one run of `fn`. */
  async function specCounters<T>(
    fn: () => Promise<T>,
  ): Promise<{ value: T; drafts: number; draftTokens: number; accepted: number; decodeSteps: number }> {
    const before: EngineStats = spec.stats();
    const value = await fn();
    const after = spec.stats();
    return {
      value,
      drafts: after.specDecodeDrafts - before.specDecodeDrafts,
      draftTokens: after.specDecodeDraftTokens - before.specDecodeDraftTokens,
      accepted: after.specDecodeAcceptedTokens - before.specDecodeAcceptedTokens,
      decodeSteps: after.decodeSteps - before.decodeSteps,
    };
  }

  function expectSameCompletion(got: CompletionResult, want: CompletionResult): void {
    expect(got.tokenIds).toEqual(want.tokenIds);
    expect(got.text).toBe(want.text);
    expect(got.finishReason).toBe(want.finishReason);
    expect(got.usage.completionTokens).toBe(want.usage.completionTokens);
    if (want.logprobs) {
      expect(got.logprobs).toHaveLength(want.logprobs.length);
      got.logprobs!.forEach((lp, i) => {
        expect(lp.tokenId).toBe(want.logprobs![i]!.tokenId);
        expect(lp.logprob).toBeCloseTo(want.logprobs![i]!.logprob, 4);
        expect(lp.topLogprobs?.map((t) => t.tokenId)).toEqual(want.logprobs![i]!.topLogprobs?.map((t) => t.tokenId));
      });
    }
  }

  it('gives plain decoding’s tokens and logprobs, greedy and seeded, with much of a copied story from kept drafts', async () => {
    const requests: GenerateRequest[] = [
      { prompt: copyPrompt, maxTokens: 100, sampling: { temperature: 0 }, logprobs: true, topLogprobs: 2 },
      { prompt: copyPrompt, maxTokens: 100, sampling: { temperature: 0.8, seed: 11 }, logprobs: true },
      { prompt: copyPrompt, maxTokens: 100, sampling: { temperature: 1, topP: 0.9, topK: 40, seed: 5 } },
      { prompt: copyPrompt, maxTokens: 100, sampling: { temperature: 0.7, seed: 3, logitBias: { 101: 2, 97: -1.5 } } },
    ];
    for (const request of requests) {
      const want = await plain.complete(request);
      const { value: got, accepted, draftTokens, decodeSteps } = await specCounters(() => spec.complete(request));
      expectSameCompletion(got, want);
      expect(draftTokens).toBeGreaterThan(0);
      expect(accepted).toBeLessThanOrEqual(draftTokens);
      // each kept draft is a token that took no step of its own
      expect(decodeSteps).toBe(got.usage.completionTokens - 1 - accepted);
    }
    // greedy on the copy prompt retells much of the story (its own first sentence, then the
    // earlier text's): a quarter of the tokens and more come from kept drafts (31 of 100 when
    // written, after the pauses that the first sentence's failed guesses cause)
    const greedy = await specCounters(() => spec.complete(requests[0]!));
    expect(greedy.value.text).toContain('Lily loved to play in the farm.');
    expect(greedy.accepted).toBeGreaterThan(greedy.value.usage.completionTokens / 4);
  });

  it('ends where plain decoding ends when a stop string, EOS or maxTokens falls inside a run of kept drafts', async () => {
    // (the 512-token context holds the story once and most of it again, not its EOS twice:
    // a stop token id ends the output the way EOS does)
    const cases: GenerateRequest[] = [
      // "farm" first ends the output some 70 tokens in, within copied text
      { prompt: copyPrompt, maxTokens: 100, sampling: { temperature: 0 }, stop: ['farm'] },
      { prompt: copyPrompt, maxTokens: 100, sampling: { temperature: 0 }, stop: ['farm'], includeStopStrInOutput: true },
      { prompt: copyPrompt, maxTokens: 37, sampling: { temperature: 0 } },
      // '.' ends the first sentence
      { prompt: copyPrompt, maxTokens: 100, sampling: { temperature: 0 }, stopTokenIds: [46] },
    ];
    for (const request of cases) {
      const want = await plain.complete(request);
      const { value: got, accepted } = await specCounters(() => spec.complete(request));
      expectSameCompletion(got, want);
      expect(accepted).toBeGreaterThan(0);
    }
    const byStopToken = await spec.complete(cases[3]!);
    expect(byStopToken.finishReason).toBe('stop');
    expect(byStopToken.text).not.toContain('.');
  });

  it('streams every kept token as its own event, in order, with the same texts as plain decoding', async () => {
    const request: GenerateRequest = { prompt: copyPrompt, maxTokens: 90, sampling: { temperature: 0 } };
    const collect = async (engine: Engine): Promise<TokenEvent[]> => {
      const out: TokenEvent[] = [];
      for await (const ev of engine.generate(request)) out.push(ev);
      return out;
    };
    const [want, got] = [await collect(plain), await collect(spec)];
    expect(got.map((e) => [e.tokenId, e.text, e.index])).toEqual(want.map((e) => [e.tokenId, e.text, e.index]));
    expect(got.at(-1)!.usage).toEqual(want.at(-1)!.usage);
  });

  it('batched with penalties, min_tokens and JSON requests, every output is plain decoding’s', async () => {
    const requests: GenerateRequest[] = [
      { prompt: copyPrompt, maxTokens: 80, sampling: { temperature: 0 } },
      { prompt: copyPrompt, maxTokens: 80, sampling: { temperature: 0.9, seed: 21 } },
      { prompt: copyPrompt, maxTokens: 60, sampling: { temperature: 0, frequencyPenalty: 0.5 } },
      { prompt: copyPrompt, maxTokens: 60, minTokens: 50, sampling: { temperature: 0 } },
      { prompt: copyPrompt, maxTokens: 30, sampling: { temperature: 0 }, responseFormat: { type: 'json_object' } },
      { prompt: [{ role: 'user', content: 'Tell me a story about a fox.' }], maxTokens: 70, sampling: { temperature: 0.6, seed: 2 } },
    ];
    const want: CompletionResult[] = [];
    for (const r of requests) want.push(await plain.complete(r));
    const got = await Promise.all(requests.map((r) => spec.complete(r)));
    got.forEach((g, i) => expectSameCompletion(g, want[i]!));
  });

  it('with penalties counts the drafts before each draft row, as plain decoding counts those tokens', async () => {
    // logprobs of the processed distribution (penalties applied) for this test, in both
    // engines: a draft row counting only what its slot holds would report other logprobs for
    // the drafts it kept, even where it drew the same token
    const processedLogprobs = (engine: Engine): (() => void) => {
      const runner = (engine as unknown as { runner: { step: (seqs: RunnerSequence[]) => Promise<unknown> } }).runner;
      const step = runner.step.bind(runner);
      runner.step = (seqs) =>
        step(seqs.map((q) => (q.sampling ? { ...q, sampling: { ...q.sampling, logprobsMode: 'processed' as const } } : q)));
      return () => {
        runner.step = step;
      };
    };
    const restore = [processedLogprobs(plain), processedLogprobs(spec)];
    try {
      // mild penalties (Qwen2.5's generation_config has repetition_penalty 1.05), greedy and
      // seeded: the copy still repeats much of the story
      let accepted = 0;
      for (const sampling of [
        { temperature: 0, repetitionPenalty: 1.05, frequencyPenalty: 0.1 },
        { temperature: 0.7, seed: 12, repetitionPenalty: 1.1, presencePenalty: 0.2 },
        { temperature: 0, frequencyPenalty: 0.3, presencePenalty: 0.1 },
      ]) {
        const request: GenerateRequest = { prompt: copyPrompt, maxTokens: 90, sampling, logprobs: true, topLogprobs: 3 };
        const want = await plain.complete(request);
        const run = await specCounters(() => spec.complete(request));
        expectSameCompletion(run.value, want);
        accepted += run.accepted;
      }
      expect(accepted).toBeGreaterThan(10);
    } finally {
      for (const r of restore) r();
    }
  });

  it('with min_tokens bans the stop tokens in exactly the draft rows before it is reached', async () => {
    // O is the greedy retelling. For each q whose token O[q] is new there, O[q] as the stop
    // token and min_tokens q end the output at q + 1 tokens, O unchanged before it (the ban
    // removes a token greedy never picked). Where q is a draft row after a still-banned first
    // row, a row banned one token too long would draw another token, which (the draft of
    // O[q] refused) would become the output's next: three such q here when written (checked by
    // giving every draft row the first row's bias).
    const O = (await plain.complete({ prompt: copyPrompt, maxTokens: 100, sampling: { temperature: 0 } })).tokenIds;
    const fresh = O.map((_, q) => q).filter((q) => q >= 20 && !O.slice(0, q).includes(O[q]!));
    expect(fresh.length).toBeGreaterThan(5);
    let accepted = 0;
    for (const q of fresh) {
      const request: GenerateRequest = {
        prompt: copyPrompt,
        maxTokens: 100,
        minTokens: q,
        stopTokenIds: [O[q]!],
        sampling: { temperature: 0 },
      };
      const want = await plain.complete(request);
      const run = await specCounters(() => spec.complete(request));
      expectSameCompletion(run.value, want);
      expect(run.value.tokenIds, `min_tokens ${q}`).toEqual(O.slice(0, q + 1));
      accepted += run.accepted;
    }
    expect(accepted).toBeGreaterThan(0);
  });

  it('under a JSON schema masks each draft row as the grammar stands after the drafts before it: plain decoding’s output, drafts kept', async () => {
    // the answer the model is asked for is in the prompt once already, as JSON
    const chat = await plain.tokenize([{ role: 'user', content: LILY_PROMPT }]);
    const shown = await plain.tokenize(`{"story": "${LILY.slice(0, 140)}"}`);
    const prompt = [...chat, ...shown, EOS, ...chat];
    const schema = {
      type: 'object',
      properties: { story: { type: 'string', maxLength: 300 } },
      required: ['story'],
      additionalProperties: false,
    };
    for (const responseFormat of [{ type: 'json_schema', schema }, { type: 'json_object' }] as const) {
      for (const sampling of [{ temperature: 0 }, { temperature: 0.8, seed: 4 }]) {
        const request: GenerateRequest = { prompt, maxTokens: 120, sampling, responseFormat, logprobs: true };
        const want = await plain.complete(request);
        const { value: got, accepted } = await specCounters(() => spec.complete(request));
        expectSameCompletion(got, want);
        // (a mask from the wrong place in the grammar would have let a row draw a token the
        // grammar refuses there, which fails the request, or changed the output)
        expect(accepted, `${responseFormat.type} ${JSON.stringify(sampling)}`).toBeGreaterThan(10);
      }
    }
  });

  it('under memory pressure (preemptions) 24 mixed concurrent requests end as without drafts, and every block is freed', async () => {
    const story = LILY.slice(0, 110);
    const requests: GenerateRequest[] = Array.from({ length: 24 }, (_, i) => ({
      prompt: `${story} ${story.slice(0, 30 + i)}`,
      maxTokens: 60 + (i % 5) * 20,
      sampling: i % 2 ? { temperature: 0.8, seed: i, frequencyPenalty: i % 4 === 1 ? 0.3 : 0 } : { temperature: 0 },
      ...(i % 7 === 0 && i % 5 !== 1 ? { minTokens: 10 } : {}),
      ...(i % 5 === 1 ? { responseFormat: { type: 'json_object' as const } } : {}),
    }));
    // a KV budget of about 30 blocks of 16 tokens for 8 running sequences of up to 230 tokens
    const small = { maxBatchSequences: 8, kvCacheBytes: 1.2e6, responseCacheEntries: 0 };
    const run = async (options: object): Promise<{ texts: string[]; stats: EngineStats }> => {
      const engine = await Engine.load(DEMO, { ...small, ...options });
      try {
        const texts = (await Promise.all(requests.map((r) => engine.complete(r)))).map((c) => c.text);
        return { texts, stats: engine.stats() };
      } finally {
        await engine.close();
      }
    };
    const without = await run({});
    const withDrafts = await run({ speculativeTokens: 6 });
    expect(withDrafts.texts).toEqual(without.texts);
    expect(withDrafts.stats.preemptions).toBeGreaterThan(0);
    expect(withDrafts.stats.specDecodeAcceptedTokens).toBeGreaterThan(0);
    expect(withDrafts.stats.kvBlocksUsed).toBe(0);
  });

  it('refuses bad speculative options before loading anything, naming the option', async () => {
    for (const [options, param] of [
      [{ speculativeTokens: -1 }, 'speculativeTokens'],
      [{ speculativeTokens: 1.5 }, 'speculativeTokens'],
      [{ speculativeTokens: 33 }, 'speculativeTokens'],
      [{ speculativeTokens: 4, promptLookupMin: 0 }, 'promptLookupMin'],
      [{ speculativeTokens: 4, promptLookupMax: 65 }, 'promptLookupMax'],
      [{ speculativeTokens: 4, promptLookupMin: 5, promptLookupMax: 3 }, 'promptLookupMin'],
    ] as const) {
      const e = await failure(() => Engine.load('/no/such/model', options));
      expect(isAutoGlmError(e, 'invalid_request'), String(e)).toBe(true);
      expect((e as { param?: string }).param).toBe(param);
    }
  });
});
