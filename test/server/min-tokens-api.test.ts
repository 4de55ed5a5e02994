/**
 * min_tokens (vLLM's) at the HTTP surface (a real server on loopback around the demo
 * engine): it reaches the engine from both routes, and bad values are 400s naming it.
 */
import { expect, test } from 'vitest';
import { STORY_PROMPT, postJson, useDemoServer } from './helpers.js';

const server = useDemoServer({ responseCacheEntries: 0 });
const MODEL = 'demo-stories';

interface Answer {
  choices: { finish_reason: string; message?: { content: string }; text?: string }[];
  usage: { completion_tokens: number };
  error?: { param: string | null; message: string };
}

const chat = async (extra: Record<string, unknown>) => {
  const r = await postJson(`${server().url}/v1/chat/completions`, { model: MODEL, messages: STORY_PROMPT, temperature: 0, ...extra });
  return { status: r.status, body: r.json as unknown as Answer };
};

test('chat: a story that ends by itself goes on to min_tokens, and only the ending changes', async () => {
  const natural = await chat({ max_tokens: 400 });
  expect(natural.status).toBe(200);
  expect(natural.body.choices[0]!.finish_reason).toBe('stop');
  const n = natural.body.usage.completion_tokens;
  const held = await chat({ max_tokens: n + 8, min_tokens: n + 8 });
  expect(held.status).toBe(200);
  expect(held.body.choices[0]!.finish_reason).toBe('length');
  expect(held.body.usage.completion_tokens).toBe(n + 8);
  expect(held.body.choices[0]!.message!.content.startsWith(natural.body.choices[0]!.message!.content)).toBe(true);
});

test('completions: min_tokens holds a stop string back until it is reached', async () => {
  const body = { model: MODEL, prompt: 'Once upon a time, there was a', max_tokens: 40, temperature: 0, stop: [' '] };
  const cut = await postJson(`${server().url}/v1/completions`, body);
  expect(cut.status).toBe(200);
  const short = (cut.json as unknown as Answer).choices[0]!.text!;
  const held = await postJson(`${server().url}/v1/completions`, { ...body, min_tokens: 12 });
  expect(held.status).toBe(200);
  const long = (held.json as unknown as Answer).choices[0]!.text!;
  expect(long.length).toBeGreaterThan(short.length);
  expect(long).toContain(' ');
});

test.each([
  [{ min_tokens: -1, max_tokens: 5 }, 'min_tokens'],
  [{ min_tokens: 2.5, max_tokens: 5 }, 'min_tokens'],
  [{ min_tokens: 6, max_tokens: 5 }, 'max_tokens'],
  [{ min_tokens: 3, max_tokens: 5, response_format: { type: 'json_object' } }, 'response_format'],
])('%j is a 400 naming min_tokens', async (extra, mention) => {
  const r = await chat(extra);
  expect(r.status).toBe(400);
  expect(r.body.error!.param).toBe('min_tokens');
  expect(r.body.error!.message).toContain(mention);
});
