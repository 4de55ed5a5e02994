/**
 * The official openai client, unmodified, against a real server on loopback wrapping the
 * real engine on the demo model; every answer is checked against the in-process engine.
 */
import http from 'node:http';
import { connect } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { InferenceEngine } from '../../src/engine/types.js';
import {
  API_KEY,
  DEMO_MODEL_DIR,
  STORY_PROMPT,
  loadDemoEngine,
  parseMetrics,
  postJson,
  readSse,
  startServer,
  waitFor,
  type RunningServer,
} from './helpers.js';

let engine: InferenceEngine;
let running: RunningServer;
let client: OpenAI;
const MODEL = 'demo-stories';

beforeAll(async () => {
  engine = await loadDemoEngine();
  running = await startServer({ engine });
  client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: API_KEY, maxRetries: 0 });
});

afterAll(async () => {
  await running?.close();
  await engine?.close();
});

const tokenIdsOf = (x: unknown): number[] => (x as { token_ids: number[] }).token_ids;

describe('chat completions', () => {
  test('greedy and seeded sampling equal the in-process engine, streamed or not', async () => {
    for (const sampling of [{ temperature: 0 }, { temperature: 0.9, seed: 1234 }, { temperature: 1.0, seed: 7, topP: 0.9 }]) {
      const expected = await engine.complete({ prompt: STORY_PROMPT, maxTokens: 24, sampling });
      const body = {
        model: MODEL,
        messages: STORY_PROMPT,
        max_tokens: 24,
        temperature: sampling.temperature,
        ...('seed' in sampling ? { seed: sampling.seed } : {}),
        ...('topP' in sampling ? { top_p: sampling.topP } : {}),
      };
      const whole = await client.chat.completions.create(body);
      expect(whole.object).toBe('chat.completion');
      expect(whole.model).toBe(MODEL);
      expect(whole.choices).toHaveLength(1);
      expect(whole.choices[0]!.message).toMatchObject({ role: 'assistant', content: expected.text });
      expect(whole.choices[0]!.finish_reason).toBe(expected.finishReason);
      expect(whole.usage).toMatchObject({
        prompt_tokens: expected.usage.promptTokens,
        completion_tokens: expected.usage.completionTokens,
        total_tokens: expected.usage.promptTokens + expected.usage.completionTokens,
      });

      const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
      let text = '';
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | null | undefined;
      let roleSeen = false;
      for await (const chunk of stream) {
        expect(chunk.object).toBe('chat.completion.chunk');
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices[0];
        if (!choice) continue;
        if (choice.delta.role === 'assistant') roleSeen = true;
        text += choice.delta.content ?? '';
        finish = choice.finish_reason ?? finish;
      }
      expect(roleSeen).toBe(true);
      expect(text).toBe(expected.text);
      expect(finish).toBe(expected.finishReason);
      expect(usage?.completion_tokens).toBe(expected.usage.completionTokens);
    }
  });

  test('greedy output reproduces the demo model README until max_tokens', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: STORY_PROMPT, max_tokens: 30, temperature: 0 });
    expect('Once upon a time, there was a curious cow named Lucy.'.startsWith(r.choices[0]!.message.content!)).toBe(true);
    expect(r.choices[0]!.finish_reason).toBe('length');
  });

  test('n choices: choice i samples with seed + i', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: STORY_PROMPT,
      max_tokens: 12,
      temperature: 1,
      seed: 99,
      n: 2,
    });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1]);
    for (const [i, c] of r.choices.entries()) {
      const expected = await engine.complete({ prompt: STORY_PROMPT, maxTokens: 12, sampling: { temperature: 1, seed: 99 + i } });
      expect(c.message.content).toBe(expected.text);
    }
    expect(r.usage!.completion_tokens).toBe(24);
  });

  test('logprobs with top_logprobs', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: STORY_PROMPT,
      max_tokens: 6,
      temperature: 0,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = r.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(6);
    expect(content.map((c) => c.token).join('')).toBe(r.choices[0]!.message.content);
    for (const entry of content) {
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.top_logprobs).toHaveLength(3);
      // greedy: the chosen token is the most likely one
      expect(entry.top_logprobs[0]!.logprob).toBeCloseTo(entry.logprob, 4);
      expect(entry.bytes).toEqual([...Buffer.from(entry.token)]);
    }
  });

  test("chat_template_kwargs.add_generation_prompt is the client's, not overridden by the server's default", async () => {
    const r = await postJson(
      `${running.url}/v1/chat/completions`,
      { model: MODEL, messages: STORY_PROMPT, max_tokens: 1, chat_template_kwargs: { add_generation_prompt: false } },
      { authorization: `Bearer ${API_KEY}` },
    );
    expect(r.status).toBe(200);
    const without = await engine.tokenize(STORY_PROMPT, { chatTemplateKwargs: { addGenerationPrompt: false } });
    expect(without.length).toBeLessThan((await engine.tokenize(STORY_PROMPT)).length);
    expect((r.json.usage as { prompt_tokens: number }).prompt_tokens).toBe(without.length);
  });

  test('a stop string ends the choice before it, finish_reason stop', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: STORY_PROMPT, max_tokens: 60, temperature: 0, stop: ['cow'] });
    expect(r.choices[0]!.message.content).toBe('Once upon a time, there was a curious ');
    expect(r.choices[0]!.finish_reason).toBe('stop');
  });
});

describe('completions', () => {
  test('a stream keeps the connection open for the next request, or closes it when the client sent Connection: close', async () => {
    const agent = new http.Agent({ keepAlive: true });
    const stream = (connection: string): Promise<{ header: string | undefined; body: string; closedByServer: boolean }> =>
      new Promise((resolve, reject) => {
        const body = JSON.stringify({ model: MODEL, prompt: 'Once', max_tokens: 2, stream: true });
        const req = http.request(`${running.url}/v1/completions`, {
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, connection },
        });
        let closed = false;
        req.on('socket', (socket) => socket.once('close', () => (closed = true)));
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          // give the server a moment to close its end, if it is going to
          res.on('end', () => setTimeout(() => resolve({ header: res.headers.connection, body: text, closedByServer: closed }), 300));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      const kept = await stream('keep-alive');
      expect([kept.header, kept.body.trimEnd().endsWith('data: [DONE]'), kept.closedByServer]).toEqual(['keep-alive', true, false]);
      const closed = await stream('close');
      expect([closed.header, closed.body.trimEnd().endsWith('data: [DONE]'), closed.closedByServer]).toEqual(['close', true, true]);
    } finally {
      agent.destroy();
    }
  });

  test('string, token-id and list prompts, streamed or not, equal the engine', async () => {
    const prompt = 'Once upon a time, there was a little dog named';
    const expected = await engine.complete({ prompt, maxTokens: 16, sampling: { temperature: 0 } });
    const whole = await client.completions.create({ model: MODEL, prompt, max_tokens: 16, temperature: 0 });
    expect(whole.object).toBe('text_completion');
    expect(whole.choices[0]!.text).toBe(expected.text);
    expect(whole.usage!.prompt_tokens).toBe(expected.usage.promptTokens);

    const ids = await engine.tokenize(prompt);
    const byIds = await client.completions.create({ model: MODEL, prompt: ids, max_tokens: 16, temperature: 0 });
    expect(byIds.choices[0]!.text).toBe(expected.text);

    const stream = await client.completions.create({ model: MODEL, prompt, max_tokens: 16, temperature: 0, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(expected.text);

    const other = 'The cat';
    const list = await client.completions.create({ model: MODEL, prompt: [prompt, other], max_tokens: 8, temperature: 0 });
    expect(list.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(list.choices[1]!.text).toBe((await engine.complete({ prompt: other, maxTokens: 8, sampling: { temperature: 0 } })).text);
    const idLists = await client.completions.create({
      model: MODEL,
      prompt: [ids, await engine.tokenize(other)],
      max_tokens: 8,
      temperature: 0,
    });
    expect(idLists.choices.map((c) => c.text)).toEqual(list.choices.map((c) => c.text));
  });

  test('logprobs as an integer: parallel arrays with text offsets', async () => {
    const r = await client.completions.create({ model: MODEL, prompt: 'The dog', max_tokens: 5, temperature: 0, logprobs: 2 });
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(5);
    expect(lp.tokens!.join('')).toBe(r.choices[0]!.text);
    expect(lp.top_logprobs!.every((t) => Object.keys(t).length >= 1 && Object.keys(t).length <= 2)).toBe(true);
    expect(lp.text_offset).toEqual([0, 1, 2, 3, 4].map((i) => lp.tokens!.slice(0, i).join('').length));
  });
});

describe('cluster extensions', () => {
  test('return_token_ids: per chunk when streaming, whole completion otherwise', async () => {
    const expected = await engine.complete({ prompt: STORY_PROMPT, maxTokens: 20, sampling: { temperature: 0 } });
    const body = { model: MODEL, messages: STORY_PROMPT, max_tokens: 20, temperature: 0, return_token_ids: true };
    const whole = await postJson(`${running.url}/v1/chat/completions`, body);
    const choice = (whole.json.choices as unknown[])[0];
    expect(tokenIdsOf(choice)).toEqual(expected.tokenIds);

    const stream = await client.chat.completions.create({ ...body, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
    const ids: number[] = [];
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      expect(Array.isArray(tokenIdsOf(c))).toBe(true);
      // each chunk's ids are exactly the tokens behind its text (the role-only opening chunk has none)
      if (tokenIdsOf(c).length > 0) expect(await engine.detokenize(tokenIdsOf(c))).toBe(c.delta.content ?? '');
      else expect(c.delta.content ?? '').toBe('');
      ids.push(...tokenIdsOf(c));
    }
    expect(ids).toEqual(expected.tokenIds);
  });

  test('resume_token_ids continues a generation exactly, usage counts resumed + new', async () => {
    for (const sampling of [{ temperature: 0 }, { temperature: 0.8, seed: 5 }]) {
      const full = await engine.complete({ prompt: STORY_PROMPT, maxTokens: 20, sampling });
      const cut = 7;
      const resumed = await postJson(`${running.url}/v1/chat/completions`, {
        model: MODEL,
        messages: STORY_PROMPT,
        max_tokens: 20,
        ...('seed' in sampling ? { seed: sampling.seed } : {}),
        temperature: sampling.temperature,
        return_token_ids: true,
        resume_token_ids: full.tokenIds.slice(0, cut),
      });
      expect(resumed.status).toBe(200);
      const choice = (resumed.json.choices as { message: { content: string } }[])[0]!;
      expect(tokenIdsOf(choice)).toEqual(full.tokenIds.slice(cut));
      expect(choice.message.content).toBe(await engine.detokenize(full.tokenIds.slice(cut)));
      expect((resumed.json.usage as { completion_tokens: number }).completion_tokens).toBe(full.tokenIds.length);
    }
  });
});

describe('request timings', () => {
  interface Timings {
    time_to_first_token_ms: number;
    time_per_output_token_ms: number;
    e2e_ms: number;
  }
  const timingsOf = (usage: unknown): Timings => (usage as { timings: Timings }).timings;

  test('usage.timings: TTFT > 0, TPOT consistent with the wall time and the token count', async () => {
    const t0 = performance.now();
    const whole = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a story about a timing.' }],
      max_tokens: 12,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const wallMs = performance.now() - t0;
    expect(whole.usage!.completion_tokens).toBe(12);
    const t = timingsOf(whole.usage);
    expect(t.time_to_first_token_ms).toBeGreaterThan(0);
    expect(t.time_per_output_token_ms).toBeGreaterThan(0);
    // measured from the request's arrival, so inside the client's wall time: first token, then 11 gaps
    expect(t.time_to_first_token_ms + 11 * t.time_per_output_token_ms).toBeLessThanOrEqual(t.e2e_ms + 1e-6);
    expect(t.e2e_ms).toBeLessThan(wallMs);
  });

  test('a stream with include_usage carries them in its usage chunk, within what the client saw', async () => {
    const t0 = performance.now();
    const response = await fetch(`${running.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({
        model: MODEL,
        prompt: 'A story about a stream:',
        max_tokens: 10,
        temperature: 0,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    let firstTextMs: number | undefined;
    const events = await readSse(response, (data) => {
      if (data === '[DONE]') return;
      const chunk = JSON.parse(data) as { choices: { text: string }[] };
      if (firstTextMs === undefined && (chunk.choices[0]?.text ?? '') !== '') firstTextMs = performance.now() - t0;
    });
    const wallMs = performance.now() - t0;
    const usageChunk = JSON.parse(events.at(-2)!) as { choices: unknown[]; usage: { completion_tokens: number } };
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage.completion_tokens).toBe(10);
    const t = timingsOf(usageChunk.usage);
    expect(t.time_to_first_token_ms).toBeGreaterThan(0);
    // the server's first token precedes the client's first text; its end precedes the stream's
    expect(t.time_to_first_token_ms).toBeLessThan(firstTextMs!);
    expect(t.time_to_first_token_ms + 9 * t.time_per_output_token_ms).toBeLessThanOrEqual(t.e2e_ms + 1e-6);
    expect(t.e2e_ms).toBeLessThan(wallMs);
  });
});

describe('models, tokenizer and metrics routes', () => {
  test('/v1/models lists the served model', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual([MODEL]);
  });

  test('/tokenize and /detokenize round-trip and match the engine', async () => {
    const auth = { authorization: `Bearer ${API_KEY}` };
    const t = await postJson(`${running.url}/tokenize`, { prompt: 'Hello, cat!' }, auth);
    expect(t.status).toBe(200);
    expect(t.json.tokens).toEqual(await engine.tokenize('Hello, cat!'));
    expect(t.json.count).toBe((t.json.tokens as number[]).length);
    const chat = await postJson(`${running.url}/tokenize`, { messages: STORY_PROMPT }, auth);
    expect(chat.json.tokens).toEqual(await engine.tokenize(STORY_PROMPT));
    const d = await postJson(`${running.url}/detokenize`, { tokens: t.json.tokens }, auth);
    expect(d.json).toEqual({ prompt: 'Hello, cat!' });
    // no tokens are the empty text (the tokenizer library threw on an empty list: a 500)
    const none = await postJson(`${running.url}/detokenize`, { tokens: [] }, auth);
    expect([none.status, none.json]).toEqual([200, { prompt: '' }]);
    // an id past the vocabulary is a 400 naming this route's field (it named the engine's token_ids)
    const past = await postJson(`${running.url}/detokenize`, { tokens: [1, 1_000_000] }, auth);
    expect([past.status, past.json.error]).toEqual([
      400,
      expect.objectContaining({ param: 'tokens', message: 'tokens contains 1000000, not a token id of this model (vocabulary of 258)' }),
    ]);
  });

  test('/tokenize templates content parts as chat completions does', async () => {
    const auth = { authorization: `Bearer ${API_KEY}` };
    const parts = [
      { type: 'text', text: 'Tell me a story ' },
      { type: 'text', text: 'about a cat.' },
    ];
    const t = await postJson(`${running.url}/tokenize`, { messages: [{ role: 'user', content: parts }] }, auth);
    // the parts used to be dropped: the message templated as if it were empty
    expect(t.json.tokens).toEqual(await engine.tokenize(STORY_PROMPT));
    const c = await postJson(
      `${running.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: parts }], max_tokens: 1 },
      auth,
    );
    expect((c.json.usage as { prompt_tokens: number }).prompt_tokens).toBe(t.json.count);
  });

  test('long inputs are tokenized in the worker pool, identically to the engine', async () => {
    const pooled = await startServer({ engine, tokenizerPool: { modelDir: DEMO_MODEL_DIR, threads: 1, minChars: 64 } });
    try {
      const auth = { authorization: `Bearer ${API_KEY}` };
      const text = 'Once upon a time, there was a little cat. '.repeat(8);
      const messages = [{ role: 'user', content: text }];
      const t = await postJson(`${pooled.url}/tokenize`, { prompt: text }, auth);
      expect(t.json.tokens).toEqual(await engine.tokenize(text));
      const c = await postJson(`${pooled.url}/tokenize`, { messages }, auth);
      expect(c.json.tokens).toEqual(await engine.tokenize(messages));
      // a pool that failed would have been retired in favour of inline tokenization
      expect(pooled.server.tokenizerPooled).toBe(true);
      // A message too deeply nested to post to a thread is the client's fault: a 400 for it,
      // and the pool stays (one such request used to retire it for every client).
      const deep = `{"role":"user","content":${JSON.stringify(text)},"extra":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
      const bad = await postJson(`${pooled.url}/tokenize`, `{"messages":[${deep}]}`, auth);
      expect(bad.status).toBe(400);
      expect(bad.json.error).toMatchObject({ code: 'invalid_request', param: 'messages' });
      expect(pooled.server.tokenizerPooled).toBe(true);
    } finally {
      await pooled.close();
    }
  });

  test('a client gone while its prompt was in the tokenizer pool is never admitted', async () => {
    const pooled = await startServer({ engine, tokenizerPool: { modelDir: DEMO_MODEL_DIR, threads: 1, minChars: 64 } });
    try {
      await waitFor(() => engine.stats().running === 0, 10_000, 'idle engine');
      const before = engine.stats().generationTokens;
      // a template variable the template never reads makes the input long, so the pool takes a while
      const body = JSON.stringify({
        model: MODEL,
        messages: STORY_PROMPT,
        chat_template_kwargs: { unused: 'x'.repeat(2_000_000) },
        max_tokens: 300,
        ignore_eos: true,
        temperature: 1,
      });
      await sendThenHangUp(pooled.url, '/v1/chat/completions', body);
      // the pool has one thread, which takes tasks in order: once this long /tokenize is
      // answered, the request above has left the pool and been admitted or not
      const after = await postJson(
        `${pooled.url}/tokenize`,
        { prompt: 'A cat sat on a mat. '.repeat(8) },
        { authorization: `Bearer ${API_KEY}` },
      );
      expect(after.status).toBe(200);
      await waitFor(() => pooled.server.lifecycle.pending === 0, 15_000, 'request released');
      // was 300: the 'close' came while the pool tokenized, before the route listened for it
      expect(engine.stats().generationTokens - before).toBeLessThan(50);
    } finally {
      await pooled.close();
    }
  });

  test('metrics move with traffic', async () => {
    const scrape = async (): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${running.url}/metrics`)).text());
    const before = await scrape();
    await client.chat.completions.create({ model: MODEL, messages: STORY_PROMPT, max_tokens: 5, temperature: 0 });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: STORY_PROMPT,
      max_tokens: 5,
      temperature: 0,
      stream: true,
    });
    for await (const _ of stream) void _;
    await postJson(`${running.url}/v1/chat/completions`, { model: 'nope', messages: STORY_PROMPT });
    const after = await scrape();
    const grew = (name: string, by: number): void => expect((after.get(name) ?? 0) - (before.get(name) ?? 0), name).toBe(by);
    grew('autoglm:http_requests_total{route="/v1/chat/completions",status="200"}', 2);
    grew('autoglm:http_requests_total{route="/v1/chat/completions",status="404"}', 1);
    grew('autoglm:request_success_total{finished_reason="length"}', 2);
    grew('autoglm:generation_tokens_total', 10);
    grew('autoglm:time_to_first_token_seconds_count', 2);
    grew('autoglm:e2e_request_latency_seconds_count', 2);
    grew('autoglm:request_queue_time_seconds_count', 2);
    grew('autoglm:time_per_output_token_seconds_count', 8);
    grew('autoglm:request_time_per_output_token_seconds_count', 2);
    expect(after.get('autoglm:prompt_tokens_total')! - (before.get('autoglm:prompt_tokens_total') ?? 0)).toBeGreaterThan(0);
    for (const gauge of ['num_requests_running', 'num_requests_waiting', 'kv_cache_usage_perc'])
      expect(after.get(`autoglm:${gauge}{model_name="${MODEL}"}`), gauge).toBeGreaterThanOrEqual(0);
    // idle: every block is free (the engine's own figures)
    const stats = engine.stats();
    expect(stats.kvBlocksTotal).toBeGreaterThan(0);
    expect(after.get(`autoglm:kv_cache_blocks_total{model_name="${MODEL}"}`)).toBe(stats.kvBlocksTotal);
    expect(after.get(`autoglm:kv_cache_blocks_free{model_name="${MODEL}"}`)).toBe(stats.kvBlocksTotal);
    expect(after.has('process_cpu_user_seconds_total')).toBe(true);
    expect(after.has('nodejs_eventloop_lag_seconds')).toBe(true);

    // engine steps: a prompt no earlier request used (no response-cache hit) runs one prefill
    // step and, for 5 tokens, 4 decode steps of one row each
    const beforeSteps = await scrape();
    await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a story about a metric.' }],
      max_tokens: 5,
      temperature: 0,
    });
    const afterSteps = await scrape();
    const step = (name: string, kind: string): number => {
      const key = `autoglm:${name}{model_name="${MODEL}",kind="${kind}"}`;
      return (afterSteps.get(key) ?? 0) - (beforeSteps.get(key) ?? 0);
    };
    expect(step('engine_steps_total', 'prefill')).toBe(1);
    expect(step('engine_steps_total', 'decode')).toBe(4);
    expect(step('engine_step_tokens_total', 'decode')).toBe(4);
    expect(step('engine_step_tokens_total', 'prefill')).toBeGreaterThan(5);
    expect(step('engine_step_seconds_total', 'prefill')).toBeGreaterThan(0);
    expect(step('engine_step_seconds_total', 'decode')).toBeGreaterThan(0);
  });
});

/** Sends a whole POST on a raw socket and closes it at once, without waiting for an answer. */
function sendThenHangUp(baseUrl: string, path: string, body: string): Promise<void> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      const head = [
        `POST ${path} HTTP/1.1`,
        `host: ${hostname}:${port}`,
        'content-type: application/json',
        `authorization: Bearer ${API_KEY}`,
        `content-length: ${Buffer.byteLength(body)}`,
      ];
      socket.end(`${head.join('\r\n')}\r\n\r\n${body}`, () => {
        socket.destroy();
        resolve();
      });
    });
    socket.on('error', reject);
  });
}
