/**
 * Reasoning output end to end: real servers on loopback around the real engine, on a
 * scripted model (src/testing/scripted-model.ts) with a Qwen3-like chat template that opens
 * `<think>` in the generation prompt (or closes it empty with enable_thinking false, or
 * leaves it to the model). Whole and streamed answers, with the official openai client too;
 * reasoning cut by max_tokens; tags split across tokens; parsers none and deepseek_r1; tool
 * calls after the reasoning and a `<tool_call>` inside it; a JSON response_format that
 * applies after the reasoning (whole, and resumed after every token); usage's
 * reasoning_tokens; a stream resumed through the real gateway mid-reasoning; /tokenize.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { ReasoningTags } from '../../src/engine/types.js';
import { SCRIPT_END, writeScriptedModel, type ScriptedModel } from '../../src/testing/scripted-model.js';
import { behindGatewayWithFailingWorker } from './failing-engine.js';
import { API_KEY, postJson, readSse, startServer, type RunningServer } from './helpers.js';

const MODEL = 'scripted';
const WEATHER_CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}';
/** After the generation prompt's `<think>\n`: two tokens of reasoning, the end tag, then `{}` (a JSON object, so json_object's mask lets it through). */
const THINKING = ['The user asks', ' for 2+2.', '</think>', '{', '}', SCRIPT_END];
const REASONING = 'The user asks for 2+2.';
/** After enable_thinking false's `</think>\n\n` ('\n\n' is one token here). */
const NO_THINKING = ['It is 4.', SCRIPT_END];
/** Qwen3's first template: the model opens the reasoning itself. */
const SELF_THINK = ['<think>', 'Planning.', '</think>', '{', '}', SCRIPT_END];
/** Whitespace after the end tag stays in content, as vLLM leaves it. */
const LAYOUT = ['Short.', ' Done.</think>', '\n\n', 'It is 4.', SCRIPT_END];
/** The end tag in three tokens: none of it may reach either field. */
const SPLIT = ['Hmm', '</', 'think', '>', 'Split answer.', SCRIPT_END];
const TOOL = ['I need the weather.', ' Calling it.</think>', '\n\n<tool_call>\n', WEATHER_CALL, '\n</tool_call>', SCRIPT_END];
const MUSING = ['Maybe <tool_call>', '{"name": "get_weather", "arguments": {}}</tool_call>', ' No need.</think>', 'Sunny.', SCRIPT_END];

/**
 * Qwen3's thinking switch, and a `think_in_prompt` variable that leaves `<think>` to the
 * model; tools rendered hermes-style; `script` (chat_template_kwargs) picks a script.
 */
const THINKING_TEMPLATE = [
  '{{ bos_token }}',
  '{% if tools %}<|im_start|>system\n<tools>{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n',
  'Call a function as <tool_call>\n{"name": <name>, "arguments": <object>}\n</tool_call><|im_end|>\n{% endif %}',
  '{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}',
  '{% if add_generation_prompt %}<|im_start|>assistant\n',
  '{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n',
  '{% elif think_in_prompt is not defined or think_in_prompt %}<think>\n{% endif %}',
  '{% if script %}{{ script }}{% endif %}{% endif %}',
].join('');

const TOOLS = [
  {
    type: 'function' as const,
    function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
  },
];
const ASK = [{ role: 'user' as const, content: 'What is 2+2?' }];

let root: string;
let model: ScriptedModel;
let engine: Engine;
let running: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-reasoning-'));
  model = await writeScriptedModel(join(root, MODEL), {
    chatTemplate: THINKING_TEMPLATE,
    scripts: [
      { trigger: '\n', pieces: THINKING },
      { trigger: '\n\n', pieces: NO_THINKING },
      { trigger: '<|script:self|>', pieces: SELF_THINK },
      { trigger: '<|script:layout|>', pieces: LAYOUT },
      { trigger: '<|script:split|>', pieces: SPLIT },
      { trigger: '<|script:tool|>', pieces: TOOL },
      { trigger: '<|script:musing|>', pieces: MUSING },
    ],
  });
  engine = await Engine.load(model.dir, { kvCacheBytes: 8 * 1024 * 1024, servedModelName: MODEL, responseCacheEntries: 0 });
  running = await startServer({ engine });
  client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: API_KEY, maxRetries: 0 });
});

afterAll(async () => {
  await running?.close();
  await engine?.close();
  await rm(root, { recursive: true, force: true });
});

const text = (pieces: string[]): string => pieces.slice(0, -1).join('');
const idsOf = (pieces: string[]): number[] => pieces.map((p) => model.tokenIds.get(p)!);

interface Message {
  content: string | null;
  reasoning_content?: string | null;
  reasoning?: string | null;
  tool_calls?: { function: { name: string; arguments: string } }[];
}
interface Whole {
  message: Message;
  finish: string;
  usage: { completion_tokens: number; completion_tokens_details?: { reasoning_tokens: number } };
}

async function whole(body: Record<string, unknown>, url = running.url): Promise<Whole> {
  const r = await postJson(`${url}/v1/chat/completions`, { model: MODEL, messages: ASK, ...body });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  const choice = (r.json.choices as { message: Message; finish_reason: string }[])[0]!;
  return { message: choice.message, finish: choice.finish_reason, usage: r.json.usage as Whole['usage'] };
}

interface Streamed {
  reasoning: string;
  content: string;
  calls: { index: number; function: { name: string; arguments: string } }[];
  finish: string | null;
  tokenIds: number[];
  /** Each chunk's delta (of the choice read), in order, and its token ids. */
  deltas: Record<string, unknown>[];
  deltaIds: number[][];
  usage: Whole['usage'] | null;
}

/** A raw SSE chat stream (choice `index`), read into its fields. */
async function stream(body: Record<string, unknown>, index = 0): Promise<Streamed> {
  const r = await fetch(`${running.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model: MODEL, messages: ASK, stream: true, ...body }),
  });
  expect(r.status).toBe(200);
  const read: Streamed = { reasoning: '', content: '', calls: [], finish: null, tokenIds: [], deltas: [], deltaIds: [], usage: null };
  for (const data of await readSse(r)) {
    if (data === '[DONE]') continue;
    const chunk = JSON.parse(data) as { choices: Record<string, unknown>[]; usage?: Whole['usage'] | null };
    if (chunk.usage) read.usage = chunk.usage;
    const choice = chunk.choices.find((c) => c.index === index);
    if (!choice) continue;
    const delta = choice.delta as { reasoning_content?: string; reasoning?: string; content?: string; tool_calls?: Streamed['calls'] };
    read.deltas.push(delta);
    expect(delta.reasoning).toBe(delta.reasoning_content);
    read.reasoning += delta.reasoning_content ?? '';
    read.content += delta.content ?? '';
    read.calls.push(...(delta.tool_calls ?? []));
    read.finish = (choice.finish_reason as string | null) ?? read.finish;
    const ids = (choice.token_ids as number[] | undefined) ?? [];
    read.deltaIds.push(ids);
    read.tokenIds.push(...ids);
  }
  return read;
}

const script = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  chat_template_kwargs: { script: `<|script:${name}|>`, ...extra },
});

describe('reasoning, then the answer', () => {
  test('whole: reasoning_content (and reasoning) hold the thinking, content the answer; usage counts reasoning tokens', async () => {
    const r = await whole({});
    expect(r.message).toMatchObject({ content: '{}', reasoning_content: REASONING, reasoning: REASONING });
    expect(r.finish).toBe('stop');
    expect(r.usage.completion_tokens).toBe(THINKING.length);
    expect(r.usage.completion_tokens_details).toEqual({ reasoning_tokens: 2 });
  });

  test('streamed: reasoning deltas while thinking, then content; the end tag in no delta; usage too', async () => {
    const s = await stream({ stream_options: { include_usage: true } });
    expect([s.reasoning, s.content, s.finish]).toEqual([REASONING, '{}', 'stop']);
    // role, two reasoning deltas, then content (the end tag's chunk carried nothing and was left out)
    expect(s.deltas.map((d) => Object.keys(d).sort().join('+'))).toEqual([
      'content+role',
      'reasoning+reasoning_content',
      'reasoning+reasoning_content',
      'content',
      'content',
      '',
    ]);
    expect(s.usage?.completion_tokens_details).toEqual({ reasoning_tokens: 2 });
  });

  test('include_reasoning false (vLLM): no reasoning fields, whole or streamed; content is still only the answer', async () => {
    const r = await whole({ include_reasoning: false });
    expect(r.message.content).toBe('{}');
    expect(Object.keys(r.message)).not.toContain('reasoning_content');
    expect(Object.keys(r.message)).not.toContain('reasoning');
    // still read and counted: the tokens were generated
    expect(r.usage.completion_tokens_details).toEqual({ reasoning_tokens: 2 });
    const s = await stream({ include_reasoning: false });
    expect([s.reasoning, s.content, s.finish]).toEqual(['', '{}', 'stop']);
    expect(s.deltas.every((d) => !('reasoning_content' in d) && !('reasoning' in d))).toBe(true);
    const bad = await postJson(`${running.url}/v1/chat/completions`, { model: MODEL, messages: ASK, include_reasoning: 'no' });
    expect([bad.status, (bad.json.error as { param: string }).param]).toEqual([400, 'include_reasoning']);
  });

  test('with the openai client, whole and streamed', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: ASK });
    const message = r.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
    expect([message.reasoning_content, message.content]).toEqual([REASONING, '{}']);
    expect((r.usage as { completion_tokens_details?: unknown }).completion_tokens_details).toEqual({ reasoning_tokens: 2 });
    let reasoning = '';
    let content = '';
    for await (const chunk of await client.chat.completions.create({ model: MODEL, messages: ASK, stream: true })) {
      const delta = chunk.choices[0]?.delta as { reasoning_content?: string; content?: string | null } | undefined;
      reasoning += delta?.reasoning_content ?? '';
      content += delta?.content ?? '';
    }
    expect([reasoning, content]).toEqual([REASONING, '{}']);
  });

  test('whitespace after the end tag stays in content, as vLLM leaves it', async () => {
    const r = await whole(script('layout'));
    expect(r.message).toMatchObject({ reasoning_content: 'Short. Done.', content: '\n\nIt is 4.' });
  });

  test('an end tag split across tokens reaches neither field, whole or streamed', async () => {
    const r = await whole(script('split'));
    expect(r.message).toMatchObject({ reasoning_content: 'Hmm', content: 'Split answer.' });
    const s = await stream(script('split'));
    expect([s.reasoning, s.content]).toEqual(['Hmm', 'Split answer.']);
    for (const d of s.deltas) expect(JSON.stringify(d)).not.toMatch(/<\/|think|>/);
  });

  test('n = 2: each choice splits its own output', async () => {
    const r = await postJson(`${running.url}/v1/chat/completions`, { model: MODEL, messages: ASK, n: 2 });
    for (const c of r.json.choices as { message: Message }[])
      expect(c.message).toMatchObject({ reasoning_content: REASONING, content: '{}' });
    expect((r.json.usage as Whole['usage']).completion_tokens_details).toEqual({ reasoning_tokens: 4 });
    for (const index of [0, 1]) {
      const s = await stream({ n: 2 }, index);
      expect([s.reasoning, s.content], `choice ${index}`).toEqual([REASONING, '{}']);
    }
  });
});

describe('where the output begins', () => {
  test('cut by max_tokens before the end tag: all of it is reasoning, content null', async () => {
    const r = await whole({ max_tokens: 2 });
    expect(r.message).toMatchObject({ reasoning_content: REASONING, content: null });
    expect(r.finish).toBe('length');
    expect(r.usage.completion_tokens_details).toEqual({ reasoning_tokens: 2 });
    const s = await stream({ max_tokens: 2 });
    expect([s.reasoning, s.content, s.finish]).toEqual([REASONING, '', 'length']);
  });

  test('enable_thinking false: the prompt closes the reasoning, the output is all content', async () => {
    const r = await whole({ chat_template_kwargs: { enable_thinking: false } });
    expect(r.message).toMatchObject({ content: text(NO_THINKING), reasoning_content: null });
    expect(r.usage.completion_tokens_details).toEqual({ reasoning_tokens: 0 });
  });

  test('no <think> in the prompt: qwen3 reads a <think> the model writes first, and takes output without one as content', async () => {
    const opened = await whole(script('self', { think_in_prompt: false }));
    expect(opened.message).toMatchObject({ reasoning_content: 'Planning.', content: '{}' });
    expect(opened.usage.completion_tokens_details).toEqual({ reasoning_tokens: 1 });
    const plain = await whole({ chat_template_kwargs: { think_in_prompt: false } });
    expect(plain.message).toMatchObject({ reasoning_content: null, content: text(THINKING) });
  });

  test('deepseek_r1 takes output without a <think> as reasoning up to </think> (its first template left the tag to the model)', async () => {
    const r1 = await startServer({ engine, reasoningParser: 'deepseek_r1' });
    try {
      const r = await whole({ chat_template_kwargs: { think_in_prompt: false } }, r1.url);
      expect(r.message).toMatchObject({ reasoning_content: REASONING, content: '{}' });
    } finally {
      await r1.close();
    }
  });

  test('--reasoning-parser none: the output is content as generated, no reasoning field, no reasoning tokens', async () => {
    const none = await startServer({ engine, reasoningParser: 'none' });
    try {
      const r = await whole({}, none.url);
      expect(r.message.content).toBe(text(THINKING));
      expect('reasoning_content' in r.message).toBe(false);
      expect(r.usage.completion_tokens_details).toBeUndefined();
    } finally {
      await none.close();
    }
  });
});

describe('tool calls', () => {
  test('are read from the content after the reasoning', async () => {
    const r = await whole({ tools: TOOLS, ...script('tool') });
    expect(r.message).toMatchObject({ reasoning_content: 'I need the weather. Calling it.', content: null });
    expect(r.message.tool_calls!.map((c) => c.function)).toEqual([{ name: 'get_weather', arguments: '{"city":"Paris"}' }]);
    expect(r.finish).toBe('tool_calls');
    const s = await stream({ tools: TOOLS, ...script('tool') });
    expect([s.reasoning, s.content, s.finish]).toEqual(['I need the weather. Calling it.', '', 'tool_calls']);
    expect(s.calls.map((c) => [c.index, c.function.name])).toEqual([[0, 'get_weather']]);
  });

  test('a <tool_call> inside the reasoning is reasoning text, not a call', async () => {
    const r = await whole({ tools: TOOLS, ...script('musing') });
    expect(r.message.reasoning_content).toBe('Maybe <tool_call>{"name": "get_weather", "arguments": {}}</tool_call> No need.');
    expect(r.message.content).toBe('Sunny.');
    expect(r.message.tool_calls).toBeUndefined();
    expect(r.finish).toBe('stop');
  });
});

describe('response_format after the reasoning', () => {
  test('json_object constrains the answer only: the reasoning is free text, the content an object', async () => {
    const r = await whole({ response_format: { type: 'json_object' } });
    expect(r.message).toMatchObject({ reasoning_content: REASONING, content: '{}' });
    expect(r.finish).toBe('stop');
    // the model opening <think> itself: the first token may be the tag or the answer
    const opened = await whole({ response_format: { type: 'json_object' }, ...script('self', { think_in_prompt: false }) });
    expect(opened.message).toMatchObject({ reasoning_content: 'Planning.', content: '{}' });
  });

  test("tool_choice 'required' constrains the call after the reasoning, not the reasoning", async () => {
    // an enum, so the call the mask steers the model into ends (its logits favour no byte here)
    const bounded = [
      {
        type: 'function',
        function: { name: 'get_weather', parameters: { ...TOOLS[0]!.function.parameters, properties: { city: { enum: ['Paris'] } } } },
      },
    ];
    const r = await whole({ tools: bounded, tool_choice: 'required', parallel_tool_calls: false, ...script('tool') });
    expect(r.message).toMatchObject({ reasoning_content: 'I need the weather. Calling it.', content: null });
    expect(r.message.tool_calls!.map((c) => [c.function.name, JSON.parse(c.function.arguments)])).toEqual([
      ['get_weather', { city: 'Paris' }],
    ]);
    expect(r.finish).toBe('tool_calls');
  });

  test('resumed after every token (as the gateway resumes): the answer continues under the format, in the right field', async () => {
    await expectResumesAfterEveryToken({ response_format: { type: 'json_object' } }, THINKING, [REASONING, '{}'], 2);
  });
});

/**
 * Streams `body` whole, then resumes it (resume_token_ids) after each of its tokens: what
 * the first worker had sent (the chunks within the cut) and the resumed stream together
 * give the whole reasoning and content, and the usage of the resumed stream counts the
 * reasoning tokens of both.
 */
async function expectResumesAfterEveryToken(
  body: Record<string, unknown>,
  pieces: string[],
  expected: [string, string],
  reasoningTokens: number,
  calls: string[] = [],
): Promise<void> {
  const full = await stream({ ...body, return_token_ids: true });
  expect(full.tokenIds).toEqual(idsOf(pieces));
  for (let cut = 1; cut < full.tokenIds.length; cut++) {
    const before = { reasoning: '', content: '', calls: [] as string[], ids: [] as number[] };
    full.deltas.forEach((delta, i) => {
      const ids = full.deltaIds[i]!;
      if (before.ids.length + ids.length > cut || ids.length === 0) return;
      before.reasoning += (delta.reasoning_content as string | undefined) ?? '';
      before.content += (delta.content as string | undefined) ?? '';
      before.calls.push(...((delta.tool_calls as Streamed['calls'] | undefined) ?? []).map((c) => c.function.name));
      before.ids.push(...ids);
    });
    expect(before.ids).toEqual(full.tokenIds.slice(0, cut));
    const after = await stream({
      ...body,
      return_token_ids: true,
      resume_token_ids: before.ids,
      stream_options: { include_usage: true },
    });
    expect([before.reasoning + after.reasoning, before.content + after.content], `cut ${cut}`).toEqual(expected);
    expect([...before.calls, ...after.calls.map((c) => c.function.name)], `cut ${cut}`).toEqual(calls);
    expect([...before.ids, ...after.tokenIds]).toEqual(full.tokenIds);
    expect(after.usage?.completion_tokens_details, `cut ${cut}`).toEqual({ reasoning_tokens: reasoningTokens });
  }
}

describe('resumed streams', () => {
  test('cut inside a split end tag: the tag still reaches neither field', async () => {
    await expectResumesAfterEveryToken(script('split'), SPLIT, ['Hmm', 'Split answer.'], 1);
  });

  test('cut inside the reasoning or the tool call after it: the call comes once', async () => {
    await expectResumesAfterEveryToken({ tools: TOOLS, ...script('tool') }, TOOL, ['I need the weather. Calling it.', ''], 1, [
      'get_weather',
    ]);
  });
});

describe('through the gateway', () => {
  test('a stream resumed on another worker mid-reasoning goes on as reasoning, nothing sent twice', async () => {
    // the real engine, whose streams break after 1 token (inside the reasoning)
    await behindGatewayWithFailingWorker(engine, 1, async (url, failing) => {
      const viaGateway = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const chunks = await viaGateway.chat.completions.create({
        model: MODEL,
        messages: ASK,
        stream: true,
        stream_options: { include_usage: true },
      });
      const reasoningDeltas: string[] = [];
      let content = '';
      let usage: unknown = null;
      for await (const chunk of chunks) {
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices[0]?.delta as { reasoning_content?: string; content?: string | null } | undefined;
        if (delta?.reasoning_content) reasoningDeltas.push(delta.reasoning_content);
        content += delta?.content ?? '';
      }
      expect(failing.broken).toBe(1);
      expect(reasoningDeltas).toEqual(['The user asks', ' for 2+2.']);
      expect(content).toBe('{}');
      expect((usage as { completion_tokens_details?: unknown }).completion_tokens_details).toEqual({ reasoning_tokens: 2 });
    });
  });
});

describe('the engine', () => {
  test('refuses reasoning tags it cannot look for, naming the field', async () => {
    for (const tags of [{ start: '<think>', end: '', startsInside: true }, { start: '<think>', end: '</think>' }, 'think']) {
      await expect(
        engine.complete({
          prompt: ASK,
          maxTokens: 1,
          responseFormat: { type: 'json_object' },
          formatAfterReasoning: tags as unknown as ReasoningTags,
        }),
      ).rejects.toMatchObject({ code: 'invalid_request', param: 'formatAfterReasoning' });
    }
  });
});

describe('/tokenize', () => {
  test('counts the prompt a completion runs, with thinking on or off', async () => {
    for (const kwargs of [undefined, { enable_thinking: false }]) {
      const counted = await postJson(`${running.url}/tokenize`, { model: MODEL, messages: ASK, chat_template_kwargs: kwargs });
      const completion = await postJson(`${running.url}/v1/chat/completions`, {
        model: MODEL,
        messages: ASK,
        chat_template_kwargs: kwargs,
      });
      expect(counted.json.count).toBe((completion.json.usage as { prompt_tokens: number }).prompt_tokens);
    }
  });
});
