/**
 * response_format end to end in the engine on the demo model (real weights, the real GPU
 * path, the token-mask kernel before sampling). demo-stories writes children's stories and
 * never saw a brace: unconstrained it writes no JSON at all, constrained every token it
 * draws keeps the text valid JSON. Left to itself it writes its story inside the first
 * string and never chooses '}' over ',', so the json_object tests nudge '"' and '}' with
 * logit_bias: the bias makes them likely, the mask decides where they may go (a '}' inside a
 * string is text, and none can appear where JSON has no place for it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { MAX_INDENT } from '../../src/engine/constraints/json-rules.js';
import type { ChatMessage, CompletionResult, GenerateRequest, ResponseFormat } from '../../src/engine/types.js';
import { isAutoGlmError } from '../../src/errors.js';
import { checkJsonPrefix } from '../reference/json-prefix.js';
import { validateJson } from '../reference/json-schema-validate.js';
import { failure } from '../helpers/caught.js';

const DEMO = 'models/demo-stories';
const STORY: ChatMessage[] = [{ role: 'user', content: 'Tell me a story about a cat.' }];
/** Token ids are bytes in the demo vocabulary: '"' and '}'. */
const NUDGE = { 34: 8, 125: 8 };
const JSON_OBJECT: ResponseFormat = { type: 'json_object' };

const PET_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 12 },
    animal: { enum: ['cat', 'dog', 'frog'] },
    age: { type: 'integer' },
    friends: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 2 },
    owner: { type: ['string', 'null'], maxLength: 8 },
    happy: { type: 'boolean' },
  },
  required: ['name', 'animal', 'age', 'happy'],
  additionalProperties: false,
};

/** The JSON verdict on a text: whole, a prefix of some JSON text, or broken at a byte. */
const verdict = (text: string, topLevelObject = true) =>
  checkJsonPrefix(new TextEncoder().encode(text), { maxIndent: MAX_INDENT, topLevelObject }).status;

function constrained(seed: number, responseFormat: ResponseFormat, extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return { prompt: STORY, maxTokens: 400, sampling: { temperature: 1, seed }, responseFormat, ...extra };
}

describe('response_format', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO, { responseCacheEntries: 0 });
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('json_object at temperature 1: valid JSON at every token, and whole JSON that parses whenever it ends by itself', async () => {
    const seeds = [1, 2, 3, 4, 5, 6, 7, 8];
    const got = await Promise.all(
      seeds.map((seed) => engine.complete(constrained(seed, JSON_OBJECT, { sampling: { temperature: 1, seed, logitBias: NUDGE } }))),
    );
    for (const r of got) {
      if (r.finishReason === 'stop') {
        expect(verdict(r.text), r.text).toBe('complete');
        const value: unknown = JSON.parse(r.text);
        expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
      } else expect(verdict(r.text), r.text).toBe('incomplete');
    }
    // most end by themselves: the comparison is not vacuous
    expect(got.filter((r) => r.finishReason === 'stop').length).toBeGreaterThanOrEqual(5);
    // and they are not all the same object
    expect(new Set(got.map((r) => r.text)).size).toBeGreaterThan(4);
  });

  it('without the nudge the story model still writes only JSON (and, unconstrained, none)', async () => {
    for (const seed of [11, 12]) {
      const r = await engine.complete(constrained(seed, JSON_OBJECT, { maxTokens: 60 }));
      expect(r.finishReason).toBe('length');
      expect(verdict(r.text), r.text).toBe('incomplete');
      const free = await engine.complete({ prompt: STORY, maxTokens: 60, sampling: { temperature: 1, seed } });
      expect(verdict(free.text), free.text).toBe('rejected');
    }
  });

  it('json_schema output always validates against the schema, properties in its order', async () => {
    const schema = PET_SCHEMA;
    const got = await Promise.all([1, 2, 3, 4, 5, 6].map((seed) => engine.complete(constrained(seed, { type: 'json_schema', schema }))));
    for (const r of got) {
      expect(r.finishReason, r.text).toBe('stop');
      const value = JSON.parse(r.text) as Record<string, unknown>;
      expect(validateJson(value, schema), r.text).toEqual([]);
      const order = Object.keys(schema.properties);
      const positions = Object.keys(value).map((k) => order.indexOf(k));
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
    }
  });

  it('a batch mixing constrained and unconstrained requests leaves the unconstrained ones token for token as alone', async () => {
    const plain = (seed: number): GenerateRequest => ({ prompt: STORY, maxTokens: 40, sampling: { temperature: 0.9, seed } });
    const alone: CompletionResult[] = [];
    for (const seed of [21, 22, 23]) alone.push(await engine.complete(plain(seed)));
    const mixed = await Promise.all([
      engine.complete(plain(21)),
      engine.complete(constrained(1, JSON_OBJECT, { maxTokens: 40 })),
      engine.complete(plain(22)),
      engine.complete(constrained(2, { type: 'json_schema', schema: PET_SCHEMA }, { maxTokens: 40 })),
      engine.complete(plain(23)),
    ]);
    expect(mixed[0]!.tokenIds).toEqual(alone[0]!.tokenIds);
    expect(mixed[2]!.tokenIds).toEqual(alone[1]!.tokenIds);
    expect(mixed[4]!.tokenIds).toEqual(alone[2]!.tokenIds);
    expect(verdict(mixed[1]!.text)).not.toBe('rejected');
    expect(verdict(mixed[3]!.text)).not.toBe('rejected');
  });

  it('a max_tokens cut ends with finish_reason length and leaves the JSON unfinished', async () => {
    const r = await engine.complete(constrained(3, { type: 'json_schema', schema: PET_SCHEMA }, { maxTokens: 12 }));
    expect(r.finishReason).toBe('length');
    expect(r.tokenIds).toHaveLength(12);
    expect(verdict(r.text)).toBe('incomplete');
  });

  it('a resumed request replays its tokens through the grammar and continues exactly as the uninterrupted run', async () => {
    const request = constrained(4, { type: 'json_schema', schema: PET_SCHEMA });
    const whole = await engine.complete(request);
    expect(whole.finishReason).toBe('stop');
    for (const cut of [1, 9, Math.floor(whole.tokenIds.length / 2)]) {
      const resumed = await engine.complete({ ...request, resumeTokenIds: whole.tokenIds.slice(0, cut) });
      expect(resumed.tokenIds).toEqual(whole.tokenIds.slice(cut));
    }
    // tokens the format could not have produced are refused
    const bad = await failure(() => engine.complete({ ...request, resumeTokenIds: [...new TextEncoder().encode('[1')] }));
    expect(isAutoGlmError(bad, 'invalid_request') && bad.param === 'resume_token_ids', String(bad)).toBe(true);
  });

  it('keeps each request’s grammar state through preemption and recomputation', async () => {
    const requests = [1, 2, 3, 4, 5, 6].map((seed) =>
      constrained(seed, JSON_OBJECT, { maxTokens: 120, sampling: { temperature: 1, seed, logitBias: NUDGE } }),
    );
    const reference: CompletionResult[] = [];
    for (const r of requests) reference.push(await engine.complete(r));
    // 2 KB per token in f16: 24 blocks of 16 tokens, far less than 6 requests of ~140 tokens need at once
    const bytesPerToken = 4 * 2 * 4 * 32 * (engine.rt.preferredDType === 'f16' ? 2 : 4);
    const small = await Engine.load(DEMO, { responseCacheEntries: 0, kvCacheBytes: 24 * 16 * bytesPerToken, maxContextTokens: 384 });
    try {
      const got = await Promise.all(requests.map((r) => small.complete(r)));
      expect(small.stats().preemptions).toBeGreaterThan(0);
      got.forEach((r, i) => {
        expect(r.tokenIds).toEqual(reference[i]!.tokenIds);
        expect(verdict(r.text)).not.toBe('rejected');
      });
    } finally {
      await small.close();
    }
  });

  it('lists only allowed tokens as top alternatives, with logprobs of the masked distribution', async () => {
    // the first token of a json_object text: a newline, a space or '{'
    const r = await engine.complete(constrained(5, JSON_OBJECT, { maxTokens: 1, logprobs: true, topLogprobs: 5 }));
    const top = r.logprobs![0]!.topLogprobs!;
    expect(top.length).toBeLessThanOrEqual(3);
    for (const t of top) expect([10, 32, 123]).toContain(t.tokenId);
    if (top.length === 3) expect(top.reduce((s, t) => s + Math.exp(t.logprob), 0)).toBeCloseTo(1, 4);
    expect(r.logprobs![0]!.logprob).toBeLessThanOrEqual(0);
  });

  it.each([
    [{ type: 'json_schema', schema: { type: 'string', pattern: '^x' } }, /'pattern'/, 'response_format'],
    [
      { type: 'json_schema', schema: { type: 'object', properties: { a: { type: 'integer', minimum: 0 } } } },
      /'minimum' .*#\/properties\/a/,
      'response_format',
    ],
    [
      { type: 'json_schema', schema: { anyOf: Array.from({ length: 600 }, (_, i) => ({ const: `x${i}` })) } },
      /too alike/,
      'response_format',
    ],
    [{ type: 'json_schema' }, /needs a schema/, 'response_format'],
    [{ type: 'xml' }, /type must be 'text', 'json_object', 'json_schema', 'regex' or 'choice'/, 'response_format'],
    ['json', /must be an object/, 'response_format'],
  ])('refuses %j before anything is queued', async (responseFormat, message, param) => {
    const before = engine.stats();
    const err = await failure(() => engine.complete({ prompt: STORY, maxTokens: 5, responseFormat: responseFormat as ResponseFormat }));
    expect(isAutoGlmError(err, 'invalid_request') && err.param === param, String(err)).toBe(true);
    expect((err as Error).message).toMatch(message);
    const after = engine.stats();
    expect([after.promptTokens, after.waiting, after.running]).toEqual([before.promptTokens, 0, 0]);
  });

  it('a constraint that fails in the middle of a request fails that request alone', async () => {
    // hundreds of alternatives that begin alike, met only after `{"pick": "`: admitted, then too many parses at once
    const schema = {
      type: 'object',
      properties: { pick: { anyOf: Array.from({ length: 600 }, (_, i) => ({ const: `option ${i}` })) } },
      required: ['pick'],
    };
    // still running when the other fails (about 30 tokens in)
    const plain: GenerateRequest = { prompt: STORY, maxTokens: 80, ignoreEos: true, sampling: { temperature: 0 } };
    const alone = await engine.complete(plain);
    const [failed, other] = await Promise.all([
      failure(() => engine.complete(constrained(1, { type: 'json_schema', schema }, { maxTokens: 40 }))),
      engine.complete(plain),
    ]);
    expect(isAutoGlmError(failed, 'invalid_request') && failed.param === 'response_format', String(failed)).toBe(true);
    expect((failed as Error).message).toMatch(/too alike/);
    expect(other.tokenIds).toEqual(alone.tokenIds);
    expect(engine.stats().kvBlocksUsed).toBe(0);
  });
});

describe('response_format and the response cache', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO);
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('is part of the key, with the schema’s property order: a reordered schema is computed, not replayed', async () => {
    const schema = (order: string[]) => ({
      type: 'object',
      properties: Object.fromEntries(order.map((k) => [k, { type: 'boolean' }])),
      required: order,
    });
    const request = (order: string[]) => constrained(9, { type: 'json_schema', schema: schema(order) }, { maxTokens: 60 });
    const first = await engine.complete(request(['a', 'b']));
    const again = await engine.complete(request(['a', 'b']));
    expect(again.metrics!.responseCacheHit).toBe(true);
    expect(again.text).toBe(first.text);
    const reordered = await engine.complete(request(['b', 'a']));
    expect(reordered.metrics!.responseCacheHit).toBe(false);
    expect(Object.keys(JSON.parse(reordered.text) as object)).toEqual(['b', 'a']);
    const free = await engine.complete({ ...request(['a', 'b']), responseFormat: undefined });
    expect(free.metrics!.responseCacheHit).toBe(false);
    const text = await engine.complete({ ...request(['a', 'b']), responseFormat: { type: 'text' } });
    // 'text' is no format: the same key as none
    expect(text.metrics!.responseCacheHit).toBe(true);
    expect(text.text).toBe(free.text);
  });
});
