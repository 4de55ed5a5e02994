/**
 * Function calling end to end: real servers on loopback around the real engine, on a
 * scripted model (src/testing/scripted-model.ts) whose greedy output is a fixed text with
 * tool calls in it. Non-streamed and streamed answers, the official openai client (its
 * tool_calls shape, and a whole runTools agent loop), token ids while calls are held back,
 * resumed streams cut at every token, and a resume through the real gateway after a worker
 * fails mid-call. GLM-4.5's tagged calls on a model of their own (a template in GLM's shape).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import type { RunnableToolFunctionWithParse } from 'openai/lib/RunnableFunction';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { AFTER_TOOL_TRIGGER, SCRIPT_END, writeScriptedModel, type ScriptedModel } from '../../src/testing/scripted-model.js';
import { API_KEY, postJson, readSse, startServer, type RunningServer } from './helpers.js';
import { behindGatewayWithFailingWorker } from './failing-engine.js';
import { GLM45_TOOL_TEMPLATE } from './glm45-tool-template.js';

const MODEL = 'scripted';
const WEATHER_CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}';
const TIME_CALL = '{"name": "get_time", "arguments": {"tz": "CET"}}';
/** The default script (after the generation prompt's '\n'): text, then two calls laid out as Qwen writes them. */
const CALLS = [
  'Let me check.',
  '\n<tool_call>\n',
  WEATHER_CALL,
  '\n</tool_call>\n',
  '<tool_call>\n',
  TIME_CALL,
  '\n</tool_call>',
  SCRIPT_END,
];
const CALLS_TEXT = CALLS.slice(0, -1).join('');
const ANSWER = ['It is 22 C in Paris', ' at 10:00.', SCRIPT_END];
const PLAIN = ['The weather', ' is fine.', SCRIPT_END];
const INVALID = ['<tool_call>', '{"name": "get_weather", "arguments": {city: Paris}}', '</tool_call>', SCRIPT_END];
const LLAMA = [
  '{"name": "get_weather", "parameters": {"city": "Paris"}}',
  '; ',
  '{"name": "get_time", "parameters": {"tz": "CET"}}',
  SCRIPT_END,
];

/**
 * GLM-4.5's format after its generation prompt's `<|assistant|>`: text, a call laid out as the
 * template writes it, one without newlines. Each piece is one token and a token has one
 * successor, so a tag that recurs (before different text) cannot be a token of its own every
 * time, as it is in GLM's tokenizer: the tags after the first argument are inside larger pieces.
 */
const GLM_CALLS = [
  'Let me check.',
  '\n<tool_call>',
  'get_weather\n',
  '<arg_key>',
  'city',
  '</arg_key>',
  '\n<arg_value>',
  'Paris',
  '</arg_value>',
  '\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n<arg_key>zip</arg_key>\n<arg_value>75001</arg_value>\n',
  '</tool_call>',
  '\n<tool_call>get_time<arg_key>tz</arg_key><arg_value>CET</arg_value></tool_call>',
  SCRIPT_END,
];
/** The schema types the values: days an integer, zip a string of digits. */
const GLM_TOOLS = [
  {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' }, days: { type: 'integer' }, zip: { type: 'string' } },
        required: ['city'],
      },
    },
  },
  { type: 'function' as const, function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
];
const GLM_WEATHER = { name: 'get_weather', arguments: '{"city":"Paris","days":3,"zip":"75001"}' };

const WEATHER = { name: 'get_weather', arguments: '{"city":"Paris"}' };
const TIME = { name: 'get_time', arguments: '{"tz":"CET"}' };
const TOOLS: { type: 'function'; function: { name: string; description?: string; parameters: Record<string, unknown> } }[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
  {
    type: 'function',
    function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } },
  },
];
const ASK = [{ role: 'user' as const, content: 'Weather and time in Paris?' }];

let root: string;
let model: ScriptedModel;
let engine: Engine;
let running: RunningServer;
let llamaServer: RunningServer;
let client: OpenAI;
let glmEngine: Engine;
let glmServer: RunningServer;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-tools-'));
  model = await writeScriptedModel(join(root, MODEL), {
    scripts: [
      { trigger: '\n', pieces: CALLS },
      { trigger: AFTER_TOOL_TRIGGER, pieces: ANSWER },
      { trigger: '<|script:plain|>', pieces: PLAIN },
      { trigger: '<|script:invalid|>', pieces: INVALID },
      { trigger: '<|script:llama|>', pieces: LLAMA },
    ],
  });
  engine = await Engine.load(model.dir, { kvCacheBytes: 8 * 1024 * 1024, servedModelName: MODEL });
  // Every chat prompt is templated on a tokenizer worker thread (minChars 0): tools must reach the template there.
  running = await startServer({ engine, tokenizerPool: { modelDir: model.dir, threads: 1, minChars: 0 } });
  llamaServer = await startServer({ engine, toolCallParser: 'llama3_json' });
  client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: API_KEY, maxRetries: 0 });
  // a model of its own: the GLM-4.5-style template (the format is detected from it) and its script
  const glmModel = await writeScriptedModel(join(root, 'glm'), {
    scripts: [{ trigger: '<|assistant|>', pieces: GLM_CALLS }],
    chatTemplate: GLM45_TOOL_TEMPLATE,
  });
  // each prompt (about 700 tokens with the tools) prefills over two steps, the first sampling nothing
  glmEngine = await Engine.load(glmModel.dir, { kvCacheBytes: 8 * 1024 * 1024, servedModelName: MODEL });
  glmServer = await startServer({ engine: glmEngine });
});

afterAll(async () => {
  await running?.close();
  await llamaServer?.close();
  await glmServer?.close();
  await engine?.close();
  await glmEngine?.close();
  await rm(root, { recursive: true, force: true });
});

const idsOf = (pieces: string[]): number[] => pieces.map((p) => model.tokenIds.get(p)!);
const withoutIds = (calls: { function: { name: string; arguments: string } }[] | undefined): { name: string; arguments: string }[] =>
  (calls ?? []).map((c) => c.function);

interface StreamRead {
  content: string;
  calls: { index: number; id: string; type: string; function: { name: string; arguments: string } }[];
  finish: string | null;
  tokenIds: number[];
  chunks: Record<string, unknown>[];
}

/** A raw SSE chat stream, read into its content, calls (each as delivered) and token ids. */
async function stream(url: string, body: Record<string, unknown>): Promise<StreamRead> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model: MODEL, stream: true, ...body }),
  });
  expect(r.status).toBe(200);
  const read: StreamRead = { content: '', calls: [], finish: null, tokenIds: [], chunks: [] };
  for (const data of await readSse(r)) {
    if (data === '[DONE]') continue;
    const chunk = JSON.parse(data) as Record<string, unknown>;
    read.chunks.push(chunk);
    const choice = (chunk.choices as Record<string, unknown>[])[0];
    if (!choice) continue;
    const delta = choice.delta as { content?: string; tool_calls?: StreamRead['calls'] };
    read.content += delta.content ?? '';
    read.calls.push(...(delta.tool_calls ?? []));
    read.finish = (choice.finish_reason as string | null) ?? read.finish;
    read.tokenIds.push(...((choice.token_ids as number[] | undefined) ?? []));
  }
  return read;
}

describe('non-streamed', () => {
  test('tool_calls in the openai shape, content outside the calls, finish_reason tool_calls; tools reach the prompt', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: ASK, tools: TOOLS, temperature: 0 });
    const choice = r.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBe('Let me check.');
    const calls = choice.message.tool_calls!;
    expect(calls.map((c) => c.type)).toEqual(['function', 'function']);
    expect(withoutIds(calls as { function: { name: string; arguments: string } }[])).toEqual([WEATHER, TIME]);
    for (const c of calls) expect(c.id).toMatch(/^call_[0-9a-f]{24}$/);
    expect(JSON.parse((calls[0] as { function: { arguments: string } }).function.arguments)).toEqual({ city: 'Paris' });
    // rendered by the worker thread exactly as the engine renders it with tools
    const withTools = await engine.tokenize(ASK, { chatTemplateKwargs: { tools: TOOLS } });
    expect(r.usage!.prompt_tokens).toBe(withTools.length);
    expect(withTools.length).toBeGreaterThan((await engine.tokenize(ASK)).length + 100);
  });

  test('a model that only calls gets content null', async () => {
    const r = await postJson(`${llamaServer.url}/v1/chat/completions`, {
      model: MODEL,
      messages: ASK,
      tools: TOOLS,
      chat_template_kwargs: { script: '<|script:llama|>' },
    });
    const choice = (r.json.choices as { message: { content: unknown; tool_calls: { function: unknown }[] }; finish_reason: string }[])[0]!;
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls.map((c) => c.function)).toEqual([WEATHER, TIME]);
    expect(choice.finish_reason).toBe('tool_calls');
  });

  test('without tools nothing is parsed: the output is content, as before', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: ASK, temperature: 0 });
    expect(r.choices[0]!.message.content).toBe(CALLS_TEXT);
    expect(r.choices[0]!.message.tool_calls).toBeUndefined();
    expect(r.choices[0]!.finish_reason).toBe('stop');
  });

  test("tool_choice 'none': tools are rendered, the output stays content", async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: ASK, tools: TOOLS, tool_choice: 'none' });
    expect(r.choices[0]!.message.content).toBe(CALLS_TEXT);
    expect(r.choices[0]!.message.tool_calls).toBeUndefined();
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage!.prompt_tokens).toBe((await engine.tokenize(ASK, { chatTemplateKwargs: { tools: TOOLS } })).length);
  });

  test('parallel_tool_calls false keeps the first call', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: ASK, tools: TOOLS, parallel_tool_calls: false });
    expect(withoutIds(r.choices[0]!.message.tool_calls as { function: { name: string; arguments: string } }[])).toEqual([WEATHER]);
    expect(r.choices[0]!.finish_reason).toBe('tool_calls');
  });

  test('text without a call, and a call that is not valid JSON, stay content exactly', async () => {
    for (const [script, pieces] of [
      ['<|script:plain|>', PLAIN],
      ['<|script:invalid|>', INVALID],
    ] as const) {
      const r = await postJson(`${running.url}/v1/chat/completions`, {
        model: MODEL,
        messages: ASK,
        tools: TOOLS,
        chat_template_kwargs: { script },
      });
      const choice = (r.json.choices as { message: Record<string, unknown>; finish_reason: string }[])[0]!;
      expect(choice.message.content).toBe(pieces.slice(0, -1).join(''));
      expect('tool_calls' in choice.message).toBe(false);
      expect(choice.finish_reason).toBe('stop');
    }
  });

  test('cut by max_tokens: finish_reason stays length; calls that closed are calls, an open one is text', async () => {
    const cut = async (maxTokens: number): Promise<OpenAI.ChatCompletion.Choice> =>
      (await client.chat.completions.create({ model: MODEL, messages: ASK, tools: TOOLS, max_tokens: maxTokens })).choices[0]!;
    const inFirst = await cut(3);
    expect([inFirst.message.content, inFirst.message.tool_calls, inFirst.finish_reason]).toEqual([
      CALLS.slice(0, 3).join(''),
      undefined,
      'length',
    ]);
    const afterFirst = await cut(4);
    expect(afterFirst.message.content).toBe('Let me check.');
    expect(withoutIds(afterFirst.message.tool_calls as { function: { name: string; arguments: string } }[])).toEqual([WEATHER]);
    expect(afterFirst.finish_reason).toBe('length');
  });

  test('n = 2: each choice reads its own calls', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: ASK, tools: TOOLS, n: 2 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1]);
    for (const c of r.choices) {
      expect(withoutIds(c.message.tool_calls as { function: { name: string; arguments: string } }[])).toEqual([WEATHER, TIME]);
      expect(c.finish_reason).toBe('tool_calls');
    }
    const s = await stream(running.url, { messages: ASK, tools: TOOLS, n: 2 });
    for (const index of [0, 1]) {
      const calls = s.chunks
        .flatMap((ch) => ch.choices as { index: number; delta: { tool_calls?: { index: number; function: unknown }[] } }[])
        .filter((c) => c.index === index)
        .flatMap((c) => c.delta.tool_calls ?? []);
      expect(calls.map((c) => [c.index, c.function])).toEqual([
        [0, WEATHER],
        [1, TIME],
      ]);
    }
  });
});

describe('streamed', () => {
  test('text streams as content; each call comes whole, once, in one delta; every token id is reported', async () => {
    const whole = await postJson(`${running.url}/v1/chat/completions`, {
      model: MODEL,
      messages: ASK,
      tools: TOOLS,
      return_token_ids: true,
    });
    const s = await stream(running.url, { messages: ASK, tools: TOOLS, return_token_ids: true });
    expect(s.content).toBe('Let me check.');
    expect(s.calls.map((c) => [c.index, c.type, c.function])).toEqual([
      [0, 'function', WEATHER],
      [1, 'function', TIME],
    ]);
    expect(s.calls[0]!.id).toMatch(/^call_/);
    expect(s.finish).toBe('tool_calls');
    // held-back text still reports its tokens: the ids add up to the whole completion
    expect(s.tokenIds).toEqual(idsOf(CALLS));
    expect(s.tokenIds).toEqual((whole.json.choices as { token_ids: number[] }[])[0]!.token_ids);
    for (const chunk of s.chunks.slice(1)) {
      const choice = (chunk.choices as Record<string, unknown>[])[0];
      if (choice) expect(Array.isArray(choice.token_ids)).toBe(true);
    }
  });

  test('without token ids or logprobs asked for, chunks that would carry nothing are left out', async () => {
    const s = await stream(running.url, { messages: ASK, tools: TOOLS });
    const deltas = s.chunks.flatMap((c) => (c.choices as { delta: object; finish_reason: string | null }[]).map((ch) => ch));
    // role, content, call 0, call 1, and the finish
    expect(deltas.map((d) => Object.keys(d.delta).sort().join('+') || d.finish_reason)).toEqual([
      'content+role',
      'content',
      'tool_calls',
      'tool_calls',
      'tool_calls',
    ]);
  });

  test('the openai client accumulates the calls (ChatCompletionStream)', async () => {
    const runner = client.chat.completions.stream({ model: MODEL, messages: ASK, tools: TOOLS });
    const final = await runner.finalChatCompletion();
    const message = final.choices[0]!.message;
    expect(message.content).toBe('Let me check.');
    expect(withoutIds(message.tool_calls as { function: { name: string; arguments: string } }[])).toEqual([WEATHER, TIME]);
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
  });
});

describe('an agent loop with the openai client (runTools): call, results back, answer', () => {
  test.each([false, true])('stream: %s', async (streamed) => {
    const seen: unknown[] = [];
    const fn = (name: string, result: string): RunnableToolFunctionWithParse<Record<string, unknown>> => ({
      type: 'function',
      function: {
        name,
        description: `${name} (scripted)`,
        parameters: TOOLS.find((t) => t.function.name === name)!.function
          .parameters as RunnableToolFunctionWithParse<object>['function']['parameters'],
        parse: (text) => JSON.parse(text) as Record<string, unknown>,
        function: (args) => {
          seen.push([name, args]);
          return result;
        },
      },
    });
    const tools = [fn('get_weather', '22 C'), fn('get_time', '10:00')];
    const runner = streamed
      ? client.chat.completions.runTools({ model: MODEL, messages: ASK, tools, stream: true })
      : client.chat.completions.runTools({ model: MODEL, messages: ASK, tools });
    expect(await runner.finalContent()).toBe(ANSWER.slice(0, -1).join(''));
    expect(seen).toEqual([
      ['get_weather', { city: 'Paris' }],
      ['get_time', { tz: 'CET' }],
    ]);
    // the second request carried the assistant's calls and both results back through the template
    const sent = runner.messages.map((m) => m.role);
    expect(sent).toEqual(['user', 'assistant', 'tool', 'tool', 'assistant']);
  });
});

/** What a stream had sent once `cut` of its tokens were out: every chunk whose tokens lie within the cut. */
function sentBefore(full: StreamRead, cut: number): StreamRead {
  const before: StreamRead = { content: '', calls: [], finish: null, tokenIds: [], chunks: [] };
  for (const chunk of full.chunks.slice(1)) {
    const choice = (chunk.choices as { delta: { content?: string; tool_calls?: StreamRead['calls'] }; token_ids: number[] }[])[0];
    if (!choice || before.tokenIds.length + choice.token_ids.length > cut) break;
    before.content += choice.delta.content ?? '';
    before.calls.push(...(choice.delta.tool_calls ?? []));
    before.tokenIds.push(...choice.token_ids);
  }
  return before;
}

describe('resume (resume_token_ids, as the gateway sends them)', () => {
  test('cut after every token: the resumed stream completes the calls, numbered on from those sent before', async () => {
    const full = await stream(running.url, { messages: ASK, tools: TOOLS, return_token_ids: true });
    const ids = full.tokenIds;
    for (let cut = 1; cut < ids.length; cut++) {
      // what the first worker had sent: every chunk whose tokens lie within the cut
      const before = sentBefore(full, cut);
      expect(before.tokenIds.length).toBe(cut);
      const after = await stream(running.url, { messages: ASK, tools: TOOLS, return_token_ids: true, resume_token_ids: ids.slice(0, cut) });
      expect(before.content + after.content, `cut ${cut}`).toBe('Let me check.');
      expect(
        [...before.calls, ...after.calls].map((c) => [c.index, c.function]),
        `cut ${cut}`,
      ).toEqual([
        [0, WEATHER],
        [1, TIME],
      ]);
      expect(after.finish).toBe('tool_calls');
      expect([...before.tokenIds, ...after.tokenIds]).toEqual(ids);
    }
  });

  test('through the gateway: a worker that fails inside a call, resumed on another, gives the client each call once', async () => {
    // the real engine, whose streams break after 3 tokens (text and the first call's opening)
    await behindGatewayWithFailingWorker(engine, 3, async (url, failing) => {
      const viaGateway = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const chunks = await viaGateway.chat.completions.create({ model: MODEL, messages: ASK, tools: TOOLS, stream: true });
      let content = '';
      const calls: { index: number; id?: string; function?: { name?: string; arguments?: string } }[] = [];
      let finish: string | null = null;
      let empty = 0;
      for await (const chunk of chunks) {
        const choice = chunk.choices[0];
        if (!choice) continue;
        if (Object.keys(choice.delta).length === 0 && !choice.finish_reason && !choice.logprobs) empty++;
        content += choice.delta.content ?? '';
        calls.push(...(choice.delta.tool_calls ?? []));
        finish = choice.finish_reason ?? finish;
      }
      expect(failing.broken).toBe(1);
      // the token ids the gateway asks for are its own: chunks that carried only those (while
      // a call was held back) are not passed on as empty ones, as a worker would not send them
      expect(empty).toBe(0);
      expect(content).toBe('Let me check.');
      expect(calls.map((c) => [c.index, c.function])).toEqual([
        [0, WEATHER],
        [1, TIME],
      ]);
      expect(new Set(calls.map((c) => c.id)).size).toBe(2);
      expect(finish).toBe('tool_calls');
      // the other tool fields reach workers as sent (3 tokens: the failing worker completes them)
      const asText = await viaGateway.chat.completions.create({
        model: MODEL,
        messages: ASK,
        tools: TOOLS,
        tool_choice: 'none',
        max_tokens: 3,
      });
      expect(asText.choices[0]!.message.content).toBe(CALLS.slice(0, 3).join(''));
      const named = await viaGateway.chat.completions.create({
        model: MODEL,
        messages: ASK,
        tools: BOUNDED_TOOLS,
        tool_choice: { type: 'function', function: { name: 'get_time' } },
        parallel_tool_calls: false,
        temperature: 0,
        // @ts-expect-error server extension
        chat_template_kwargs: PLAIN_ASK.chat_template_kwargs,
      });
      expect(
        withoutIds(named.choices[0]!.message.tool_calls as { function: { name: string; arguments: string } }[]).map((c) => c.name),
      ).toEqual(['get_time']);
    });
  });
});

/**
 * The scripted model's tokens outside its scripts all have logit 0, so under the constraint
 * greedy decoding takes the lowest allowed id (bytes before added tokens): a string runs to
 * its maxLength, and after a closing tag '\n' (another call) wins over EOS unless parallel
 * calls are off. These tools are bounded so that every call ends.
 */
const BOUNDED_TOOLS = [
  {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'] },
    },
  },
  {
    type: 'function' as const,
    function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { enum: ['CET', 'UTC'] } }, required: ['tz'] } },
  },
];
/** The plain-text script: without a forced call the answer is content. */
const PLAIN_ASK = { messages: ASK, tools: BOUNDED_TOOLS, chat_template_kwargs: { script: '<|script:plain|>' }, temperature: 0 };

/** Checks a call's arguments against BOUNDED_TOOLS' schemas by hand (the schemas are small). */
function expectValidArguments(call: { name: string; arguments: string }): void {
  const args = JSON.parse(call.arguments) as Record<string, unknown>;
  if (call.name === 'get_weather') {
    expect(Object.keys(args)).toEqual(['city']);
    expect(typeof args.city === 'string' && [...args.city].length <= 12).toBe(true);
  } else {
    expect(call.name).toBe('get_time');
    expect(args).toEqual({ tz: expect.stringMatching(/^(CET|UTC)$/) });
  }
}

describe("tool_choice 'required' and a named function: the output is constrained to calls", () => {
  type Completion = {
    message: { content: string | null; tool_calls?: { function: { name: string; arguments: string } }[] };
    finish_reason: string;
  };
  const complete = async (extra: Record<string, unknown>): Promise<Completion> => {
    const r = await postJson(`${running.url}/v1/chat/completions`, { model: MODEL, ...PLAIN_ASK, ...extra });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    return (r.json.choices as Completion[])[0]!;
  };

  test("'auto' answers in text; 'required' gives one call whose arguments fit the tool's schema", async () => {
    const auto = await complete({ tool_choice: 'auto' });
    expect([auto.message.content, auto.message.tool_calls ?? [], auto.finish_reason]).toEqual([PLAIN.slice(0, -1).join(''), [], 'stop']);
    const required = await complete({ tool_choice: 'required', parallel_tool_calls: false });
    expect(required.finish_reason).toBe('tool_calls');
    expect(required.message.content).toBeNull();
    const calls = withoutIds(required.message.tool_calls);
    expect(calls).toHaveLength(1);
    expectValidArguments(calls[0]!);
  });

  test('a named function is the one called (with the openai client)', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: ASK,
      tools: BOUNDED_TOOLS,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      temperature: 0,
      // @ts-expect-error server extension
      chat_template_kwargs: PLAIN_ASK.chat_template_kwargs,
    });
    const calls = withoutIds(r.choices[0]!.message.tool_calls as { function: { name: string; arguments: string } }[]);
    expect(calls.map((c) => c.name)).toEqual(['get_weather']);
    expectValidArguments(calls[0]!);
    expect(r.choices[0]!.finish_reason).toBe('tool_calls');
  });

  test('parallel calls allowed: more than one call may come (here until max_tokens); every one is valid', async () => {
    const r = await complete({ tool_choice: 'required', max_tokens: 400 });
    const calls = withoutIds(r.message.tool_calls);
    expect(calls.length).toBeGreaterThan(1);
    for (const call of calls) expectValidArguments(call);
    expect(r.finish_reason).toBe('length');
  });

  test('streamed, and resumed from inside the call: the same single call', async () => {
    const body = { ...PLAIN_ASK, tool_choice: { type: 'function', function: { name: 'get_time' } }, parallel_tool_calls: false };
    const full = await stream(running.url, { ...body, return_token_ids: true });
    expect(full.finish).toBe('tool_calls');
    expect(full.content).toBe('');
    expect(full.calls.map((c) => c.function.name)).toEqual(['get_time']);
    expectValidArguments(full.calls[0]!.function);
    const ids = full.tokenIds;
    for (const cut of [1, Math.floor(ids.length / 2), ids.length - 2]) {
      const after = await stream(running.url, { ...body, return_token_ids: true, resume_token_ids: ids.slice(0, cut) });
      expect(
        after.calls.map((c) => [c.index, c.function]),
        `cut ${cut}`,
      ).toEqual([[0, full.calls[0]!.function]]);
      expect(after.finish).toBe('tool_calls');
      expect([...ids.slice(0, cut), ...after.tokenIds]).toEqual(ids);
    }
  });
});

describe('refused, naming the parameter', () => {
  test.each([
    ['required', undefined, 'tool_choice', "tool_choice 'required' needs tools"],
    [{ type: 'function', function: { name: 'get_weather' } }, undefined, 'tool_choice', "naming a function ('get_weather') needs tools"],
    [{ type: 'function', function: { name: 'get_date' } }, TOOLS, 'tool_choice', 'no tool of that name'],
    [
      'required',
      [{ type: 'function', function: { name: 'f', parameters: { type: 'string', format: 'date' } } }],
      'tools.0.function.parameters',
      "'format'",
    ],
  ])('tool_choice %j with tools %j: 400 naming %s', async (toolChoice, tools, param, phrase) => {
    const r = await postJson(`${running.url}/v1/chat/completions`, { model: MODEL, messages: ASK, tools, tool_choice: toolChoice });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'invalid_request', param });
    expect((r.json.error as { message: string }).message).toContain(phrase);
  });

  test('a call required and response_format json_* at once: 400 naming response_format', async () => {
    const r = await postJson(`${running.url}/v1/chat/completions`, {
      model: MODEL,
      ...PLAIN_ASK,
      tool_choice: 'required',
      response_format: { type: 'json_object' },
    });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ param: 'response_format', message: expect.stringContaining('tool_choice') });
  });

  test.each([
    [{ guided_regex: 'a+' }, 'guided_regex'],
    [{ guided_choice: ['a'] }, 'guided_choice'],
    [{ structured_outputs: { json: { type: 'object' } } }, 'structured_outputs.json'],
    [{ structured_outputs: { json_object: true } }, 'structured_outputs.json_object'],
  ])('a call required and vLLM structured output %j at once: 400 naming %s', async (extra, param) => {
    const r = await postJson(`${running.url}/v1/chat/completions`, { model: MODEL, ...PLAIN_ASK, tool_choice: 'required', ...extra });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ param, message: expect.stringContaining('tool_choice') });
  });

  test("--tool-call-parser none with tool_choice 'auto': 400 (calls could not be read), 'none' still works", async () => {
    const none = await startServer({ engine, toolCallParser: 'none' });
    try {
      const auto = await postJson(`${none.url}/v1/chat/completions`, { model: MODEL, messages: ASK, tools: TOOLS });
      expect(auto.status).toBe(400);
      expect(auto.json.error).toMatchObject({ param: 'tool_choice', message: expect.stringContaining('--tool-call-parser none') });
      const asText = await postJson(`${none.url}/v1/chat/completions`, { model: MODEL, messages: ASK, tools: TOOLS, tool_choice: 'none' });
      expect(asText.status).toBe(200);
    } finally {
      await none.close();
    }
  });
});

describe('/tokenize with tools', () => {
  test('counts what a chat completion with the same tools would template', async () => {
    const withTools = await postJson(`${running.url}/tokenize`, { model: MODEL, messages: ASK, tools: TOOLS });
    const without = await postJson(`${running.url}/tokenize`, { model: MODEL, messages: ASK });
    expect([withTools.status, without.status]).toEqual([200, 200]);
    const completion = await client.chat.completions.create({ model: MODEL, messages: ASK, tools: TOOLS });
    expect(withTools.json.count).toBe(completion.usage!.prompt_tokens);
    // the tools really went in
    expect(withTools.json.count as number).toBeGreaterThan(without.json.count as number);
  });

  test('tools with a prompt instead of messages are refused by name', async () => {
    const onPrompt = await postJson(`${running.url}/tokenize`, { model: MODEL, prompt: 'x', tools: TOOLS });
    expect([onPrompt.status, (onPrompt.json.error as { param: string }).param]).toEqual([400, 'tools']);
  });
});

describe('GLM-4.5 format (glm45, detected from the template)', () => {
  type Completion = {
    message: { content: string | null; tool_calls?: { id: string; function: { name: string; arguments: string } }[] };
    finish_reason: string;
  };
  const complete = async (body: Record<string, unknown>): Promise<Completion> => {
    const r = await postJson(`${glmServer.url}/v1/chat/completions`, { model: MODEL, ...body });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    return (r.json.choices as Completion[])[0]!;
  };

  test('non-streamed: the calls with arguments typed by the tools, content outside them', async () => {
    const choice = await complete({ messages: ASK, tools: GLM_TOOLS });
    expect(choice.message.content).toBe('Let me check.');
    expect(withoutIds(choice.message.tool_calls)).toEqual([GLM_WEATHER, TIME]);
    expect(JSON.parse(choice.message.tool_calls![0]!.function.arguments)).toEqual({ city: 'Paris', days: 3, zip: '75001' });
    expect(choice.finish_reason).toBe('tool_calls');
  });

  test('streamed: text as content, each call whole in one delta', async () => {
    const s = await stream(glmServer.url, { messages: ASK, tools: GLM_TOOLS });
    expect(s.content).toBe('Let me check.');
    expect(s.calls.map((c) => [c.index, c.type, c.function])).toEqual([
      [0, 'function', GLM_WEATHER],
      [1, 'function', TIME],
    ]);
    expect(s.finish).toBe('tool_calls');
  });

  test('resumed after every token: the replayed text is read with the same tools', async () => {
    const full = await stream(glmServer.url, { messages: ASK, tools: GLM_TOOLS, return_token_ids: true });
    const ids = full.tokenIds;
    for (let cut = 1; cut < ids.length; cut++) {
      const before = sentBefore(full, cut);
      expect(before.tokenIds.length).toBe(cut);
      const after = await stream(glmServer.url, {
        messages: ASK,
        tools: GLM_TOOLS,
        return_token_ids: true,
        resume_token_ids: before.tokenIds,
      });
      expect(before.content + after.content, `cut ${cut}`).toBe('Let me check.');
      expect(
        [...before.calls, ...after.calls].map((c) => [c.index, c.function]),
        `cut ${cut}`,
      ).toEqual([
        [0, GLM_WEATHER],
        [1, TIME],
      ]);
    }
  });

  test("a follow-up with the assistant's calls and the tool results renders through the template", async () => {
    const first = await complete({ messages: ASK, tools: GLM_TOOLS });
    const results = first.message.tool_calls!.map((c, i) => ({ role: 'tool', tool_call_id: c.id, content: ['22 C', '10:00'][i] }));
    const messages = [...ASK, { role: 'assistant', ...first.message }, ...results];
    const r = await postJson(`${glmServer.url}/v1/chat/completions`, { model: MODEL, messages, tools: GLM_TOOLS, max_tokens: 2 });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    // the past calls and results are in the prompt: it is longer than the question's by their tokens
    const asked = await postJson(`${glmServer.url}/tokenize`, { model: MODEL, messages: ASK, tools: GLM_TOOLS });
    expect((r.json.usage as { prompt_tokens: number }).prompt_tokens).toBeGreaterThan((asked.json.count as number) + 20);
  });

  test('a named function is forced in the tagged format and read back with typed values', async () => {
    // greedy decoding under the constraint takes the lowest allowed ids (see BOUNDED_TOOLS): here
    // the raw string runs to its maxLength in tabs and the integer is -0, the call ends, then EOS
    const tools = [
      {
        type: 'function' as const,
        function: {
          name: 'get_weather',
          parameters: {
            type: 'object',
            properties: { city: { type: 'string', maxLength: 4 }, days: { type: 'integer' } },
            required: ['city', 'days'],
          },
        },
      },
    ];
    const choice = await complete({
      messages: ASK,
      tools,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      max_tokens: 300,
      temperature: 0,
    });
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const calls = withoutIds(choice.message.tool_calls);
    expect(calls.map((c) => c.name)).toEqual(['get_weather']);
    const args = JSON.parse(calls[0]!.arguments) as { city: unknown; days: unknown };
    expect(Object.keys(args)).toEqual(['city', 'days']);
    expect(typeof args.city === 'string' && [...args.city].length <= 4).toBe(true);
    expect(Number.isInteger(args.days)).toBe(true);
  });
});
