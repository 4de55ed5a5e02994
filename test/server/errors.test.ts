/**
 * Every error path of the server, each with its status and OpenAI error body, on a real
 * server around the real engine; bad input must not disturb concurrent streams.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { InferenceEngine } from '../../src/engine/types.js';
import { CLUSTER_SECRET_HEADER } from '../../src/server/index.js';
import { API_KEY, STORY_PROMPT, loadDemoEngine, postJson, readSse, startServer, waitFor, type RunningServer } from './helpers.js';

let engine: InferenceEngine;
let running: RunningServer;
const MODEL = 'demo-stories';
const chat = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: MODEL,
  messages: STORY_PROMPT,
  max_tokens: 4,
  temperature: 0,
  ...extra,
});

beforeAll(async () => {
  // No response cache: every request here must really run on the GPU (in flight, cancellable).
  engine = await loadDemoEngine({ responseCacheEntries: 0 });
  running = await startServer({ engine, limits: { maxBodyBytes: 64 * 1024, maxCompletionTokens: 256, maxChoices: 4 } });
});

afterAll(async () => {
  await running?.close();
  await engine?.close();
});

function expectError(
  r: { status: number; json: Record<string, unknown> },
  status: number,
  code: string,
  param: string | null = null,
): void {
  expect(r.status, JSON.stringify(r.json)).toBe(status);
  const error = r.json.error as Record<string, unknown>;
  expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(error.code).toBe(code);
  expect(error.param).toBe(param);
  expect(typeof error.message).toBe('string');
}

describe('400: invalid parameters, each named', () => {
  test.each([
    [{ temperature: 2.5 }, 'temperature'],
    [{ temperature: 'hot' }, 'temperature'],
    [{ top_p: 0 }, 'top_p'],
    [{ top_k: -2 }, 'top_k'],
    [{ min_p: 1.5 }, 'min_p'],
    [{ repetition_penalty: 0 }, 'repetition_penalty'],
    [{ presence_penalty: 3 }, 'presence_penalty'],
    [{ frequency_penalty: -2.5 }, 'frequency_penalty'],
    [{ max_tokens: 0 }, 'max_tokens'],
    [{ max_tokens: 1000 }, 'max_tokens'],
    [{ max_completion_tokens: 1000 }, 'max_completion_tokens'],
    [{ n: 0 }, 'n'],
    [{ n: 5 }, 'n'],
    [{ seed: 1.5 }, 'seed'],
    [{ seed: -1 }, 'seed'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages.0.content'],
    [{ stop: 3 }, 'stop'],
    [{ top_logprobs: 21 }, 'top_logprobs'],
    // alternatives asked for without logprobs would be dropped in silence
    [{ top_logprobs: 2 }, 'top_logprobs'],
    [{ logprobs: 'yes' }, 'logprobs'],
    [{ stream: 'yes' }, 'stream'],
    [{ stream_options: { include_usage: true } }, 'stream_options'],
    [{ messages: [] }, 'messages'],
    [{ messages: [{ content: 'hi' }] }, 'messages.0.role'],
    [{ messages: 'hi' }, 'messages'],
    [{ model: undefined }, 'model'],
    [{ resume_token_ids: [-1] }, 'resume_token_ids.0'],
    [{ resume_token_ids: [1], n: 2 }, 'resume_token_ids'],
    // function calling: shapes, then what the server cannot do (never dropped in silence)
    [{ tools: [{ type: 'function', function: {} }] }, 'tools.0.function.name'],
    [{ tools: [{ type: 'retrieval', function: { name: 'f' } }] }, 'tools.0.type'],
    [{ tools: { type: 'function' } }, 'tools'],
    // the deprecated forms of tools / tool_choice
    [{ functions: [{ name: 'f', parameters: {} }] }, 'functions'],
    [{ function_call: 'auto' }, 'function_call'],
    [{ tool_choice: 'sometimes' }, 'tool_choice'],
    [{ parallel_tool_calls: 'yes' }, 'parallel_tool_calls'],
    // a call required (or a function named) with no tools to call
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ tool_choice: { type: 'function', function: { name: 'f' } } }, 'tool_choice'],
    [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
    [{ messages: [...STORY_PROMPT, { role: 'tool', content: '22 C' }] }, 'messages.1.tool_call_id'],
    [
      { messages: [...STORY_PROMPT, { role: 'assistant', tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{}' } }] }] },
      'messages.1.tool_calls.0.id',
    ],
    [
      {
        messages: [
          ...STORY_PROMPT,
          { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{x' } }] },
        ],
      },
      'messages.1.tool_calls.0.function.arguments',
    ],
  ])('chat %j -> param %s', async (extra, param) => {
    expectError(await postJson(`${running.url}/v1/chat/completions`, chat(extra)), 400, 'invalid_request', param);
  });

  test.each([
    [{ prompt: 5 }, 'prompt'],
    [{ prompt: [] }, 'prompt'],
    [{ prompt: [[1, 2], 'x'] }, 'prompt'],
    [{ prompt: '' }, 'prompt'],
    [{ logprobs: 21 }, 'logprobs'],
    [{ max_tokens: 0 }, 'max_tokens'],
    [{ echo: 'yes' }, 'echo'],
    [{ prompt: ['a', 'b', 'c'], n: 2 }, 'prompt'],
  ])('completions %j -> param %s', async (extra, param) => {
    const r = await postJson(`${running.url}/v1/completions`, { model: MODEL, prompt: 'Hi', max_tokens: 2, ...extra });
    expectError(r, 400, 'invalid_request', param);
  });

  test('a parameter with several accepted forms says which forms, not only why the first did not fit', async () => {
    const completion = (extra: Record<string, unknown>) =>
      postJson(`${running.url}/v1/completions`, { model: MODEL, prompt: 'Hi', max_tokens: 2, ...extra });
    // was "must be string" (the first alternative's complaint) for a token id list holding a -1
    const ids = await completion({ prompt: [1, -1] });
    expectError(ids, 400, 'invalid_request', 'prompt');
    expect((ids.json.error as { message: string }).message).toMatch(/array of token ids \(integers >= 0\)/);
    // was "must be null"
    const stop = await completion({ stop: 5 });
    expectError(stop, 400, 'invalid_request', 'stop');
    expect((stop.json.error as { message: string }).message).toMatch(/a string, or an array of at most 16 non-empty strings/);
    const content = await postJson(`${running.url}/v1/chat/completions`, chat({ messages: [{ role: 'user', content: 5 }] }));
    expectError(content, 400, 'invalid_request', 'messages.0.content');
    expect((content.json.error as { message: string }).message).toMatch(/an array of text parts/);
  });

  test('tools for a model whose chat template never reads them: 400 saying so, not tools left out of the prompt', async () => {
    const r = await postJson(
      `${running.url}/v1/chat/completions`,
      chat({ tools: [{ type: 'function', function: { name: 'get_weather' } }] }),
    );
    expectError(r, 400, 'invalid_request', 'tools');
    expect((r.json.error as { message: string }).message).toMatch(/chat template does not support tools/);
    // an empty list is no tools, and tool_choice 'none' or 'auto' without tools asks for nothing
    for (const extra of [{ tools: [] }, { tool_choice: 'none' }, { tool_choice: 'auto', parallel_tool_calls: false }])
      expect((await postJson(`${running.url}/v1/chat/completions`, chat(extra))).status).toBe(200);
  });

  test('a chat_template_kwargs key the renderer sets itself is blamed on that key, not on messages', async () => {
    for (const [kwargs, key, message] of [
      // the template failed with "Variable already declared: raise_exception", param messages
      [{ raise_exception: 1 }, 'raise_exception', /key 'raise_exception' is set by the chat template renderer itself/],
      [{ range: [] }, 'range', /a built-in of the template language/],
      // was written over by the request's messages without a word
      [{ messages: [] }, 'messages', /key 'messages' is set by the chat template renderer itself \(the request's messages\)/],
      // was ignored without a word unless a boolean
      [{ add_generation_prompt: 'yes' }, 'add_generation_prompt', /add_generation_prompt' must be true or false, got "yes"/],
    ] as const) {
      for (const path of ['/v1/chat/completions', '/tokenize']) {
        const r = await postJson(`${running.url}${path}`, { ...chat(), chat_template_kwargs: kwargs });
        expectError(r, 400, 'invalid_request', `chat_template_kwargs.${key}`);
        expect((r.json.error as { message: string }).message).toMatch(message);
      }
    }
  });

  test("nesting too deep to serialise again is a 400 naming where it is, also inside a past call's arguments text", async () => {
    const deep = '['.repeat(10_000) + ']'.repeat(10_000);
    const call = { id: 'call_1', type: 'function', function: { name: 'f', arguments: deep } };
    const messages = [...STORY_PROMPT, { role: 'assistant', content: '', tool_calls: [call] }, { role: 'user', content: 'and?' }];
    // was a 500: sizing the template's input stringified the parsed arguments and overflowed the stack
    const r = await postJson(`${running.url}/v1/chat/completions`, chat({ messages }));
    expectError(r, 400, 'invalid_request', `messages.${STORY_PROMPT.length}.tool_calls.0.function.arguments`);
    expect((r.json.error as { message: string }).message).toMatch(/nested more than 256 levels/);
    // in the body itself (template variables, an unknown field): was a 500 on chat and /tokenize
    const deepValue = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    const body = (extra: string): string => `{"model":"${MODEL}","messages":${JSON.stringify(STORY_PROMPT)},${extra}}`;
    for (const [path, extra, param] of [
      ['/v1/chat/completions', `"chat_template_kwargs":{"x":${deepValue}}`, 'chat_template_kwargs'],
      ['/tokenize', `"chat_template_kwargs":{"x":${deepValue}}`, 'chat_template_kwargs'],
      ['/v1/chat/completions', `"extra":${deepValue}`, 'extra'],
    ] as const)
      expectError(await postJson(`${running.url}${path}`, body(extra)), 400, 'invalid_request', param);
  });

  test('bad JSON and a non-object body', async () => {
    expectError(await postJson(`${running.url}/v1/chat/completions`, '{"model": '), 400, 'invalid_json');
    expectError(await postJson(`${running.url}/v1/chat/completions`, '[1, 2]'), 400, 'invalid_request');
  });

  test('context_length_exceeded for a long prompt or prompt + max_tokens over the window', async () => {
    const long = 'a'.repeat(engine.contextLength + 10);
    expectError(
      await postJson(`${running.url}/v1/completions`, { model: MODEL, prompt: long, max_tokens: 2 }),
      400,
      'context_length_exceeded',
      'prompt',
    );
    const prompt = 'a'.repeat(engine.contextLength - 100);
    expectError(
      await postJson(`${running.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 200 }),
      400,
      'context_length_exceeded',
      'prompt',
    );
  });
});

describe('401, 404, 413', () => {
  test('missing, wrong or malformed API key', async () => {
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong' }, { authorization: API_KEY }]) {
      expectError(await postJson(`${running.url}/v1/chat/completions`, chat(), headers), 401, 'invalid_api_key');
    }
    const models = await fetch(`${running.url}/v1/models`);
    expect(models.status).toBe(401);
  });

  test('unknown model and unknown route', async () => {
    expectError(await postJson(`${running.url}/v1/chat/completions`, chat({ model: 'gpt-4' })), 404, 'model_not_found', 'model');
    const r = await fetch(`${running.url}/v1/embeddings`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}` } });
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });

  test('a URL that does not decode, oversized headers and broken HTTP still get the OpenAI error body', async () => {
    const badUrl = await fetch(`${running.url}/v1/%zz`, { headers: { authorization: `Bearer ${API_KEY}` } });
    expectError({ status: badUrl.status, json: (await badUrl.json()) as Record<string, unknown> }, 400, 'invalid_request');
    // Node's HTTP parser refuses these before fastify sees a request
    const bigHeader = await fetch(`${running.url}/v1/models`, {
      headers: { authorization: `Bearer ${API_KEY}`, 'x-big': 'a'.repeat(20_000) },
    });
    expectError({ status: bigHeader.status, json: (await bigHeader.json()) as Record<string, unknown> }, 431, 'request_too_large');
    expectError(await rawGarbage(running.url), 400, 'invalid_request');
  });

  test('body over the limit', async () => {
    const r = await postJson(`${running.url}/v1/chat/completions`, chat({ messages: [{ role: 'user', content: 'x'.repeat(70_000) }] }));
    expectError(r, 413, 'request_too_large');
  });
});

describe('429 and 503', () => {
  test('per-key rate limit with Retry-After', async () => {
    const limited = await startServer({
      engine,
      auth: { apiKeys: [API_KEY, 'sk-other'] },
      // a token per 100 s: the bucket cannot refill while the first two requests run, however
      // slow a loaded machine makes them (at 0.5/s it once did, and the third got through)
      rateLimit: { requestsPerSecond: 0.01, burst: 2 },
    });
    try {
      const url = `${limited.url}/v1/completions`;
      const body = { model: MODEL, prompt: 'Hi', max_tokens: 1 };
      expect((await postJson(url, body)).status).toBe(200);
      expect((await postJson(url, body)).status).toBe(200);
      const third = await postJson(url, body);
      expectError(third, 429, 'rate_limit_exceeded');
      expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      // another key has its own bucket
      expect((await postJson(url, body, { authorization: 'Bearer sk-other' })).status).toBe(200);
    } finally {
      await limited.close();
    }
  });

  test('queue full while the only slot is taken', async () => {
    const small = await startServer({ engine, limits: { maxPendingRequests: 1 } });
    try {
      const first = fetch(`${small.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
        body: JSON.stringify({ model: MODEL, prompt: 'Once', max_tokens: 48, ignore_eos: true, stream: true }),
      });
      await waitFor(() => small.server.lifecycle.pending === 1, 10_000, 'first request admitted');
      expectError(await postJson(`${small.url}/v1/completions`, { model: MODEL, prompt: 'Hi', max_tokens: 1 }), 429, 'queue_full');
      const events = await readSse(await first);
      expect(events.at(-1)).toBe('[DONE]');
    } finally {
      await small.close();
    }
  });

  test('not ready while the model loads: /ready 503, /health 200, requests 503', async () => {
    const loading = await startServer({ engine: new Promise<InferenceEngine>(() => {}) });
    try {
      expect((await fetch(`${loading.url}/health`)).status).toBe(200);
      const ready = await fetch(`${loading.url}/ready`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: 'loading' });
      expectError(await postJson(`${loading.url}/v1/chat/completions`, chat()), 503, 'not_ready');
    } finally {
      await loading.close();
    }
  });

  test('draining: /ready 503, /health 200, new requests 503', async () => {
    const draining = await startServer({ engine });
    try {
      expect((await fetch(`${draining.url}/ready`)).status).toBe(200);
      expect(await draining.server.drain(1000)).toBe(0);
      expect((await fetch(`${draining.url}/ready`)).status).toBe(503);
      expect((await fetch(`${draining.url}/health`)).status).toBe(200);
      expectError(await postJson(`${draining.url}/v1/chat/completions`, chat()), 503, 'server_draining');
    } finally {
      await draining.close();
    }
  });

  test('cluster secret: only gateway traffic is accepted', async () => {
    const worker = await startServer({ engine, clusterSecret: 'cluster-s3cret', auth: { apiKeys: [], disabled: true } });
    try {
      const url = `${worker.url}/v1/completions`;
      const body = { model: MODEL, prompt: 'Hi', max_tokens: 1 };
      expectError(await postJson(url, body, {}), 401, 'invalid_api_key');
      expectError(await postJson(url, body, { [CLUSTER_SECRET_HEADER]: 'guess' }), 401, 'invalid_api_key');
      expect((await postJson(url, body, { [CLUSTER_SECRET_HEADER]: 'cluster-s3cret' })).status).toBe(200);
    } finally {
      await worker.close();
    }
  });
});

test('malformed requests during concurrent streams leave the streams intact', async () => {
  const prompts = ['The cat', 'Once upon a time', 'Lily'];
  const expected = await Promise.all(prompts.map((prompt) => engine.complete({ prompt, maxTokens: 24, sampling: { temperature: 0 } })));
  const firstChunks: Promise<void>[] = [];
  const streams = prompts.map(async (prompt) => {
    let started!: () => void;
    firstChunks.push(new Promise<void>((resolve) => (started = resolve)));
    const r = await fetch(`${running.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ model: MODEL, prompt, max_tokens: 24, temperature: 0, stream: true }),
    });
    const events = await readSse(r, () => started());
    expect(events.at(-1)).toBe('[DONE]');
    return events
      .slice(0, -1)
      .map((e) => (JSON.parse(e) as { choices: { text: string }[] }).choices[0]?.text ?? '')
      .join('');
  });
  // the malformed requests arrive while every stream is under way
  await Promise.all(firstChunks);
  const bad = await Promise.all([
    postJson(`${running.url}/v1/chat/completions`, '{"model": "demo-stories", "messages": [}'),
    postJson(`${running.url}/v1/chat/completions`, chat({ temperature: -1 })),
    postJson(`${running.url}/v1/completions`, { model: MODEL, prompt: [[1, 2, 'x']] }),
    rawGarbage(running.url),
  ]);
  expect(bad.slice(0, 3).map((r) => r.status)).toEqual([400, 400, 400]);
  expect(await Promise.all(streams)).toEqual(expected.map((e) => e.text));
  expect((await fetch(`${running.url}/health`)).status).toBe(200);
});

test("a top_k past the sampling kernel's u32 is no top-k, and does not fail the requests batched with it", async () => {
  // top_k 1e12 passed validation and then failed inside the shared GPU step: every request
  // in that step got its error, and the engine refused all later ones (500) until restarted
  const body = { model: MODEL, prompt: 'Once upon a time', max_tokens: 48, temperature: 0, ignore_eos: true };
  const expected = await engine.complete({ prompt: body.prompt, maxTokens: 48, sampling: { temperature: 0 }, ignoreEos: true });
  let started!: () => void;
  const firstChunk = new Promise<void>((resolve) => (started = resolve));
  const stream = fetch(`${running.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ ...body, stream: true }),
  }).then((r) => readSse(r, () => started()));
  await firstChunk;
  const huge = await postJson(`${running.url}/v1/completions`, { ...body, top_k: 1e12 });
  expect(huge.status, JSON.stringify(huge.json)).toBe(200);
  expect((huge.json.choices as { text: string }[])[0]!.text).toBe(expected.text);
  const events = await stream;
  expect(events.at(-1)).toBe('[DONE]');
  const text = events
    .slice(0, -1)
    .map((e) => (JSON.parse(e) as { choices: { text: string }[] }).choices[0]?.text ?? '')
    .join('');
  expect(text).toBe(expected.text);
  expect((await postJson(`${running.url}/v1/completions`, { ...body, max_tokens: 2 })).status).toBe(200);
});

test('a client that disconnects mid-stream cancels its generation and frees its KV blocks', async () => {
  await waitFor(() => engine.stats().running === 0, 10_000, 'idle engine');
  const baseline = engine.stats().kvBlocksUsed;
  const controller = new AbortController();
  const r = await fetch(`${running.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model: MODEL, prompt: 'Once upon a time', max_tokens: 400, ignore_eos: true, stream: true }),
    signal: controller.signal,
  });
  let chunks = 0;
  await readSse(r, () => {
    if (++chunks === 3) controller.abort();
  }).catch(() => undefined);
  await waitFor(() => running.server.lifecycle.pending === 0, 10_000, 'request released');
  await waitFor(() => engine.stats().running === 0 && engine.stats().kvBlocksUsed <= baseline, 10_000, 'KV blocks freed');
  expect(engine.stats().generationTokens).toBeGreaterThan(0);
});

/** Bytes that are not HTTP at all, on a raw socket: the server answers 400 (with its JSON body) and stays up. */
function rawGarbage(baseUrl: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => socket.end('\x16\x03\x01 not http at all\r\n\r\n'));
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('close', () => {
      const body = data.slice(data.indexOf('\r\n\r\n') + 4);
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(body) as Record<string, unknown>;
      } catch {
        // not JSON: the caller's checks on json fail
      }
      resolve({ status: Number(/HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0), json });
    });
    socket.on('error', () => resolve({ status: 0, json: {} }));
  });
}
