/**
 * vLLM's structured-output fields at the HTTP surface (src/server/structured-outputs.ts):
 * guided_choice, guided_regex, guided_json and structured_outputs {choice | regex | json |
 * json_object} on chat and completions against a real server on loopback around the demo
 * engine, each answer equal to the in-process engine's under the same format; two
 * constraints at once, unsupported fields and patterns the engine cannot enforce are 400s
 * naming the field; and through the real gateway a stream cut mid-regex is resumed on
 * another worker under the same constraint.
 */
import OpenAI from 'openai';
import { beforeAll, describe, expect, test } from 'vitest';
import type { ResponseFormat } from '../../src/engine/types.js';
import { validateJson } from '../reference/json-schema-validate.js';
import { API_KEY, STORY_PROMPT, postJson, useDemoServer } from './helpers.js';
import { behindGatewayWithFailingWorker } from './failing-engine.js';

const demo = useDemoServer({ responseCacheEntries: 0 });
let client: OpenAI;
const MODEL = 'demo-stories';

beforeAll(() => {
  client = new OpenAI({ baseURL: `${demo().url}/v1`, apiKey: API_KEY, maxRetries: 0 });
});

const REGEX = '(The|A) (cat|dog) (sat|ran)( fast)?\\.';
const CHOICES = ['happy', 'sad', 'happy ending'];
const PET = {
  type: 'object',
  properties: { name: { type: 'string', minLength: 1, maxLength: 8 }, animal: { enum: ['cat', 'dog'] } },
  required: ['name', 'animal'],
  additionalProperties: false,
};

const chat = (extra: Record<string, unknown>, seed = 1) => ({
  model: MODEL,
  messages: STORY_PROMPT,
  max_tokens: 120,
  temperature: 1,
  seed,
  ...extra,
});

/** What the engine writes for the chat prompt under `format`, in process. */
async function expectedChat(format: ResponseFormat, seed = 1): Promise<string> {
  const r = await demo().engine.complete({
    prompt: STORY_PROMPT,
    maxTokens: 120,
    sampling: { temperature: 1, seed },
    responseFormat: format,
  });
  return r.text;
}

async function post(path: string, body: Record<string, unknown>) {
  return postJson(`${demo().url}${path}`, body);
}

function content(json: Record<string, unknown>): { text: string; finish: string } {
  const choice = (json.choices as { message?: { content: string }; text?: string; finish_reason: string }[])[0]!;
  return { text: choice.message?.content ?? choice.text!, finish: choice.finish_reason };
}

describe('each field constrains the output as the engine does', () => {
  test('guided_regex and structured_outputs.regex, on chat and completions, over seeds', async () => {
    const re = new RegExp(`^(?:${REGEX})$`, 'u');
    for (const seed of [1, 2, 3]) {
      const expected = await expectedChat({ type: 'regex', pattern: REGEX }, seed);
      for (const extra of [{ guided_regex: REGEX }, { structured_outputs: { regex: REGEX } }]) {
        const r = await post('/v1/chat/completions', chat(extra, seed));
        expect(r.status, JSON.stringify(r.json)).toBe(200);
        expect(content(r.json)).toEqual({ text: expected, finish: 'stop' });
        expect(re.test(expected), expected).toBe(true);
      }
      const c = await post('/v1/completions', {
        model: MODEL,
        prompt: 'Once upon a time,',
        max_tokens: 60,
        temperature: 1,
        seed,
        guided_regex: REGEX,
      });
      expect(c.status).toBe(200);
      expect(content(c.json).finish).toBe('stop');
      expect(re.test(content(c.json).text), content(c.json).text).toBe(true);
    }
  });

  test('guided_choice and structured_outputs.choice: one of the choices, finish_reason stop, streamed too', async () => {
    for (const seed of [1, 2, 3, 4]) {
      const expected = await expectedChat({ type: 'choice', choices: CHOICES }, seed);
      expect(CHOICES).toContain(expected);
      for (const extra of [{ guided_choice: CHOICES }, { structured_outputs: { choice: CHOICES } }]) {
        const r = await post('/v1/chat/completions', chat(extra, seed));
        expect(content(r.json)).toEqual({ text: expected, finish: 'stop' });
      }
      let streamed = '';
      let finish: string | null = null;
      const stream = await client.chat.completions.create({
        ...chat({}, seed),
        stream: true,
        // the openai client sends extra fields as they are, as vLLM's docs have it (extra_body in Python)
        ...({ guided_choice: CHOICES } as object),
      } as OpenAI.ChatCompletionCreateParamsStreaming);
      for await (const chunk of stream) {
        streamed += chunk.choices[0]?.delta.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      expect({ streamed, finish }).toEqual({ streamed: expected, finish: 'stop' });
    }
  });

  test('guided_json and structured_outputs.json, as an object or as JSON text: the same as response_format json_schema', async () => {
    const expected = await expectedChat({ type: 'json_schema', schema: PET }, 2);
    expect(validateJson(JSON.parse(expected), PET)).toEqual([]);
    for (const extra of [
      { guided_json: PET },
      { guided_json: JSON.stringify(PET) },
      { structured_outputs: { json: PET } },
      { structured_outputs: { json: JSON.stringify(PET), disable_fallback: true } },
      { response_format: { type: 'json_schema', json_schema: { name: 'pet', schema: PET } } },
    ]) {
      const r = await post('/v1/chat/completions', chat(extra, 2));
      expect(r.status, JSON.stringify(extra)).toBe(200);
      expect(content(r.json).text, JSON.stringify(extra)).toBe(expected);
    }
  });

  test('structured_outputs.json_object: one JSON object', async () => {
    const expected = await expectedChat({ type: 'json_object' }, 3);
    const r = await post('/v1/chat/completions', chat({ structured_outputs: { json_object: true } }, 3));
    expect(content(r.json).text).toBe(expected);
    // (whitespace may come before the object, as in json_object mode)
    expect(expected.trimStart().startsWith('{')).toBe(true);
  });

  test("response_format 'text' beside a guided field is no second constraint", async () => {
    const r = await post('/v1/chat/completions', chat({ response_format: { type: 'text' }, guided_choice: CHOICES }));
    expect(r.status).toBe(200);
    expect(CHOICES).toContain(content(r.json).text);
  });
});

describe('400s naming the field', () => {
  test.each([
    [{ response_format: { type: 'json_object' }, guided_regex: 'a' }, 'guided_regex', 'cannot be combined with response_format'],
    [{ guided_choice: ['a'], guided_regex: 'a' }, 'guided_regex', 'cannot be combined with guided_choice'],
    [{ guided_json: PET, structured_outputs: { regex: 'a' } }, 'structured_outputs', 'cannot be combined with guided_json'],
    [{ guided_regex: 'a', guided_json: PET }, 'guided_json', 'cannot be combined with guided_regex'],
    [{ structured_outputs: {} }, 'structured_outputs', 'exactly one of'],
    [{ structured_outputs: { regex: 'a', choice: ['a'] } }, 'structured_outputs.choice', 'exactly one of'],
    [{ structured_outputs: { grammar: 'root ::= "a"' } }, 'structured_outputs.grammar', 'not supported'],
    [{ structured_outputs: { regex: 5 } }, 'structured_outputs.regex', 'string'],
    [{ guided_grammar: 'root ::= "a"' }, 'guided_grammar', 'not supported'],
    [{ guided_whitespace_pattern: ' ?' }, 'guided_whitespace_pattern', 'not supported'],
    [{ guided_regex: 'a(?=b)' }, 'guided_regex', 'lookahead'],
    [{ guided_regex: '(a)\\1' }, 'guided_regex', 'backreference'],
    [{ guided_regex: '\\bword' }, 'guided_regex', 'word boundary'],
    [{ guided_regex: '(?P<n>a)' }, 'guided_regex', 'named group'],
    [{ guided_regex: '\\p{L}' }, 'guided_regex', 'Unicode property'],
    [{ guided_regex: '(?i)a' }, 'guided_regex', 'inline flags'],
    [{ guided_regex: 'a{1,100000}' }, 'guided_regex', 'repeat count'],
    [{ guided_regex: '(a' }, 'guided_regex', 'invalid regex'],
    [{ guided_regex: '[^\\x00-\\x{10FFFF}]' }, 'guided_regex', 'matches no text'],
    [{ guided_regex: 42 }, 'guided_regex', 'string'],
    [{ structured_outputs: { regex: 'a|(?<=b)' } }, 'structured_outputs.regex', 'lookbehind'],
    [{ guided_choice: [] }, 'guided_choice', '1 to 1024'],
    [{ guided_choice: ['yes', ''] }, 'guided_choice.1', 'non-empty'],
    [{ guided_choice: ['yes', 3] }, 'guided_choice.1', 'string'],
    [{ structured_outputs: { choice: [] } }, 'structured_outputs.choice', '1 to 1024'],
    [{ guided_json: '{"type": ' }, 'guided_json', 'not JSON'],
    [{ guided_json: '[1]' }, 'guided_json', 'JSON Schema'],
    [{ guided_json: { type: 'string', format: 'email' } }, 'guided_json', "'format'"],
    [{ structured_outputs: { json: { type: 'string', format: 'email' } } }, 'structured_outputs.json', "'format'"],
  ])('%j: 400 naming %s', async (extra, param, phrase) => {
    for (const path of ['/v1/chat/completions', '/v1/completions']) {
      const body = path === '/v1/completions' ? { model: MODEL, prompt: 'Once', max_tokens: 8, ...extra } : chat(extra);
      const r = await post(path, body);
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      expect(r.json.error, path).toMatchObject({ code: 'invalid_request', param });
      expect((r.json.error as { message: string }).message, path).toContain(phrase);
    }
  });

  test('through the openai client: a BadRequestError with the param', async () => {
    const e = await client.chat.completions
      .create({ ...chat({}), ...({ guided_regex: 'x(?!y)' } as object) } as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('guided_regex');
  });
});

describe('through the gateway', () => {
  test('guided_regex reaches the worker as sent, and a stream cut mid-regex is resumed on another worker under it', async () => {
    const pattern = '[A-Z][a-z]{2,8} is \\d{1,2} years old\\.';
    // both longer than the 4 tokens after which the first worker's stream breaks
    const LONG_CHOICES = ['once upon a time there was a cat', 'once upon a time there was a dog'];
    await behindGatewayWithFailingWorker(demo().engine, 4, async (url, failing) => {
      const viaGateway = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
      for (const [extra, check] of [
        [{ guided_regex: pattern }, (t: string) => new RegExp(`^(?:${pattern})$`, 'u').test(t)],
        [{ guided_choice: LONG_CHOICES }, (t: string) => LONG_CHOICES.includes(t)],
      ] as const) {
        const body = chat(extra, 5);
        const direct = content((await post('/v1/chat/completions', body)).json);
        expect(direct.finish).toBe('stop');
        expect(check(direct.text), direct.text).toBe(true);
        const before = failing.broken;
        let streamed = '';
        const stream = await viaGateway.chat.completions.create({ ...body, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
        for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? '';
        expect(failing.broken).toBe(before + 1);
        expect(streamed).toBe(direct.text);
      }
      const refused = await postJson(`${url}/v1/chat/completions`, chat({ guided_regex: '(?<=a)b' }));
      expect(refused.status).toBe(400);
      expect(refused.json.error).toMatchObject({ param: 'guided_regex' });
    });
  });
});
