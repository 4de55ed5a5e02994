/**
 * Stop strings at the HTTP surface (a real server on loopback around the demo engine, its
 * response cache on): vLLM's include_stop_str_in_output keeps the stop string that ended
 * the output at its end, on both routes, streamed or not, with finish_reason 'stop'.
 */
import { expect, test } from 'vitest';
import { API_KEY, STORY_PROMPT, postJson, readSse, useDemoServer } from './helpers.js';

const server = useDemoServer();
const MODEL = 'demo-stories';

interface Choice {
  text?: string;
  message?: { content: string };
  delta?: { content?: string };
  finish_reason: string | null;
}

/** The text and finish reason of one choice, whole or from its chunks. */
async function answer(path: string, body: Record<string, unknown>): Promise<{ text: string; finish: string | null }> {
  if (!body.stream) {
    const r = await postJson(`${server().url}${path}`, body);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const c = (r.json.choices as Choice[])[0]!;
    return { text: c.text ?? c.message!.content, finish: c.finish_reason };
  }
  const response = await fetch(`${server().url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify(body),
  });
  const choices = (await readSse(response)).filter((d) => d !== '[DONE]').flatMap((d) => (JSON.parse(d) as { choices: Choice[] }).choices);
  return { text: choices.map((c) => c.text ?? c.delta?.content ?? '').join(''), finish: choices.at(-1)!.finish_reason };
}

test.each([
  ['/v1/completions', { prompt: 'Once upon a time' }],
  ['/v1/chat/completions', { messages: STORY_PROMPT }],
] as const)('%s: include_stop_str_in_output keeps the stop string at the end, streamed or not', async (path, input) => {
  const base = { model: MODEL, ...input, max_tokens: 40, temperature: 0 };
  const { text: full } = await answer(path, base);
  // a stop string from the middle of the greedy output: the second word with the space before it
  const from = full.indexOf(' ', full.indexOf(' ') + 1);
  expect(from).toBeGreaterThan(0);
  const stop = full.slice(from, full.indexOf(' ', from + 1));
  const at = full.indexOf(stop);
  for (const stream of [false, true]) {
    expect(await answer(path, { ...base, stop: [stop], stream })).toEqual({ text: full.slice(0, at), finish: 'stop' });
    // was the same text as without it (and a cached answer must not be the other's)
    expect(await answer(path, { ...base, stop: [stop], include_stop_str_in_output: true, stream })).toEqual({
      text: full.slice(0, at + stop.length),
      finish: 'stop',
    });
    // no stop string: nothing changes
    expect(await answer(path, { ...base, include_stop_str_in_output: true, stream })).toEqual({ text: full, finish: 'length' });
  }
});

test('include_stop_str_in_output must be a boolean', async () => {
  const r = await postJson(`${server().url}/v1/completions`, {
    model: MODEL,
    prompt: 'Hi',
    max_tokens: 2,
    include_stop_str_in_output: 'yes',
  });
  expect(r.status).toBe(400);
  expect((r.json.error as { param: string }).param).toBe('include_stop_str_in_output');
});
