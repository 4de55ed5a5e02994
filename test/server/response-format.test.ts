/**
 * response_format at the HTTP surface, with the official openai client against a real
 * server on loopback around the demo engine: json_object and json_schema on chat and
 * completions, streamed and not, each answer equal to the in-process engine's; 400s naming
 * response_format (and the unsupported keyword) for what cannot be enforced; and through
 * the real gateway, a stream cut mid-JSON and resumed on another worker comes out whole.
 */
import OpenAI from 'openai';
import { beforeAll, describe, expect, test } from 'vitest';
import type { ResponseFormat } from '../../src/engine/types.js';
import { validateJson } from '../reference/json-schema-validate.js';
import { API_KEY, STORY_PROMPT, parseMetrics, postJson, useDemoServer } from './helpers.js';
import { behindGatewayWithFailingWorker } from './failing-engine.js';

const demo = useDemoServer({ responseCacheEntries: 0 });
let client: OpenAI;
const MODEL = 'demo-stories';

beforeAll(() => {
  client = new OpenAI({ baseURL: `${demo().url}/v1`, apiKey: API_KEY, maxRetries: 0 });
});

const PET = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 12 },
    animal: { enum: ['cat', 'dog', 'frog'] },
    age: { type: 'integer' },
    happy: { type: 'boolean' },
  },
  required: ['name', 'animal', 'age', 'happy'],
  additionalProperties: false,
};
const PET_FORMAT = { type: 'json_schema', json_schema: { name: 'pet', schema: PET, strict: true } } as const;
/** The demo model never saw a brace: logit_bias nudges '"' and '}' (token ids are bytes), the mask places them. */
const NUDGE = { '34': 8, '125': 8 };

async function streamedChat(body: OpenAI.ChatCompletionCreateParamsStreaming): Promise<{ content: string; finish: string | null }> {
  let content = '';
  let finish: string | null = null;
  for await (const chunk of await client.chat.completions.create(body)) {
    content += chunk.choices[0]?.delta.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  return { content, finish };
}

describe('chat completions', () => {
  test('json_schema: the content validates against the schema, streamed or not, as the engine writes it', async () => {
    for (const seed of [1, 2, 3]) {
      const expected = await demo().engine.complete({
        prompt: STORY_PROMPT,
        maxTokens: 300,
        sampling: { temperature: 1, seed },
        responseFormat: { type: 'json_schema', schema: PET },
      });
      const body = { model: MODEL, messages: STORY_PROMPT, max_tokens: 300, temperature: 1, seed, response_format: PET_FORMAT };
      const whole = await client.chat.completions.create(body);
      const content = whole.choices[0]!.message.content!;
      expect(content).toBe(expected.text);
      expect(whole.choices[0]!.finish_reason).toBe('stop');
      expect(validateJson(JSON.parse(content), PET)).toEqual([]);
      expect(await streamedChat({ ...body, stream: true })).toEqual({ content, finish: 'stop' });
    }
  });

  test('json_object: the content parses as an object, streamed or not', async () => {
    const body = {
      model: MODEL,
      messages: STORY_PROMPT,
      max_tokens: 400,
      temperature: 1,
      seed: 2,
      logit_bias: NUDGE,
      response_format: { type: 'json_object' as const },
    };
    const expected = await demo().engine.complete({
      prompt: STORY_PROMPT,
      maxTokens: 400,
      sampling: { temperature: 1, seed: 2, logitBias: { 34: 8, 125: 8 } },
      responseFormat: { type: 'json_object' },
    });
    expect(expected.finishReason).toBe('stop');
    const whole = await client.chat.completions.create(body);
    const content = whole.choices[0]!.message.content!;
    expect(content).toBe(expected.text);
    const value: unknown = JSON.parse(content);
    expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    expect(await streamedChat({ ...body, stream: true })).toEqual({ content, finish: 'stop' });
  });

  test("'text' is free text, as no response_format", async () => {
    const body = { model: MODEL, messages: STORY_PROMPT, max_tokens: 16, temperature: 0 };
    const plain = await client.chat.completions.create(body);
    const text = await client.chat.completions.create({ ...body, response_format: { type: 'text' } });
    expect(text.choices[0]!.message.content).toBe(plain.choices[0]!.message.content);
  });
});

describe('metrics', () => {
  test('constrained requests and their token-mask lookups are counted on /metrics', async () => {
    const scrape = async (): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${demo().url}/metrics`)).text());
    const series = (m: Map<string, number>, name: string): number => m.get(`${name}{model_name="${MODEL}"}`) ?? 0; // a counter has no series before its first count
    const before = await scrape();
    await client.chat.completions.create({ model: MODEL, messages: STORY_PROMPT, max_tokens: 8, response_format: { type: 'json_object' } });
    await client.chat.completions.create({ model: MODEL, messages: STORY_PROMPT, max_tokens: 8 });
    const after = await scrape();
    const grew = (name: string): number => series(after, name) - series(before, name);
    expect(grew('autoglm:constrained_requests_total')).toBe(1);
    // one mask per sampled token of the constrained request (the first at admission)
    expect(grew('autoglm:token_mask_queries_total')).toBeGreaterThanOrEqual(8);
    expect(grew('autoglm:token_mask_cache_hits_total')).toBeGreaterThanOrEqual(0);
    expect(series(after, 'autoglm:token_mask_cache_hits_total')).toBeLessThanOrEqual(series(after, 'autoglm:token_mask_queries_total'));
  });
});

describe('completions', () => {
  test('json_object and json_schema, streamed or not, as the engine writes them', async () => {
    const prompt = 'Once upon a time';
    for (const [responseFormat, engineFormat] of [
      [{ type: 'json_object' }, { type: 'json_object' }],
      [PET_FORMAT, { type: 'json_schema', schema: PET }],
    ] as const) {
      const expected = await demo().engine.complete({
        prompt,
        maxTokens: 200,
        sampling: { temperature: 1, seed: 5, logitBias: { 34: 8, 125: 8 } },
        responseFormat: engineFormat as ResponseFormat,
      });
      // the openai client's completions types have no response_format: it passes the body on as given
      const body = { model: MODEL, prompt, max_tokens: 200, temperature: 1, seed: 5, logit_bias: NUDGE, response_format: responseFormat };
      const whole = await client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming);
      expect(whole.choices[0]!.text).toBe(expected.text);
      expect(whole.choices[0]!.finish_reason).toBe(expected.finishReason);
      if (expected.finishReason === 'stop') JSON.parse(expected.text);
      let streamed = '';
      for await (const chunk of await client.completions.create({ ...body, stream: true } as OpenAI.CompletionCreateParamsStreaming))
        streamed += chunk.choices[0]?.text ?? '';
      expect(streamed).toBe(expected.text);
    }
  });
});

describe('refused, naming response_format', () => {
  const refusal = async (responseFormat: unknown, stream = false): Promise<{ status: number; error: Record<string, unknown> }> => {
    const r = await postJson(
      `${demo().url}/v1/chat/completions`,
      { model: MODEL, messages: STORY_PROMPT, max_tokens: 5, stream, response_format: responseFormat },
      { authorization: `Bearer ${API_KEY}` },
    );
    return { status: r.status, error: r.json.error as Record<string, unknown> };
  };

  test.each([
    ['pattern', { type: 'string', pattern: '^[a-z]+$' }],
    ['format', { type: 'object', properties: { when: { type: 'string', format: 'date-time' } } }],
    ['minimum', { type: 'object', properties: { age: { type: 'integer', minimum: 0 } } }],
    ['patternProperties', { type: 'object', patternProperties: { '^x': {} } }],
    ['uniqueItems', { type: 'array', uniqueItems: true }],
    ['not', { not: { type: 'null' } }],
  ])("an unsupported keyword ('%s') is a 400 that names it, streamed or not", async (keyword, schema) => {
    for (const stream of [false, true]) {
      const r = await refusal({ type: 'json_schema', json_schema: { name: 'x', schema } }, stream);
      expect(r.status).toBe(400);
      expect(r.error).toMatchObject({ code: 'invalid_request', param: 'response_format' });
      expect(r.error.message).toContain(`'${keyword}'`);
    }
  });

  test.each([
    [{ type: 'xml' }],
    [{ type: 'json_schema' }],
    [{ type: 'json_schema', json_schema: { name: 'x' } }],
    [{ type: 'json_schema', json_schema: { schema: {} } }],
    [{ type: 'json_schema', json_schema: { name: 'x', schema: 'string' } }],
    ['json_object'],
  ])('%j is a 400 naming response_format', async (responseFormat) => {
    const r = await refusal(responseFormat);
    expect(r.status).toBe(400);
    expect(r.error).toMatchObject({ code: 'invalid_request', param: 'response_format' });
  });

  test('through the openai client: a BadRequestError with the param', async () => {
    let err: unknown;
    try {
      await client.chat.completions.create({
        model: MODEL,
        messages: STORY_PROMPT,
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'x' } } },
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('response_format');
  });
});

describe('through the gateway', () => {
  test('response_format reaches the worker as sent, and a stream cut mid-JSON is resumed on another worker, whole', async () => {
    await behindGatewayWithFailingWorker(demo().engine, 20, async (url, failing) => {
      const viaGateway = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const body = { model: MODEL, messages: STORY_PROMPT, max_tokens: 300, temperature: 1, seed: 3, response_format: PET_FORMAT };
      const direct = await client.chat.completions.create(body);
      let content = '';
      for await (const chunk of await viaGateway.chat.completions.create({ ...body, stream: true }))
        content += chunk.choices[0]?.delta.content ?? '';
      expect(failing.broken).toBe(1);
      expect(content).toBe(direct.choices[0]!.message.content);
      expect(validateJson(JSON.parse(content), PET)).toEqual([]);
      // a refusal comes back from the worker as it was
      const refused = await postJson(`${url}/v1/chat/completions`, {
        model: MODEL,
        messages: STORY_PROMPT,
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', format: 'email' } } },
      });
      expect(refused.status).toBe(400);
      expect(refused.json.error).toMatchObject({ param: 'response_format' });
    });
  });
});
