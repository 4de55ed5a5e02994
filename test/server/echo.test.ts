/**
 * OpenAI's echo on /v1/completions (a real server on loopback around the demo engine): the
 * prompt comes back before the completion, with logprobs its tokens' logprobs too (the
 * first token none), max_tokens 0 returns the prompt alone (what evaluation harnesses send
 * to score a text), and a resumed stream (the gateway's failover) does not echo again.
 * Also vLLM's prompt_logprobs (ranks included) on completions and chat.
 */
import { expect, test } from 'vitest';
import { API_KEY, postJson, readSse, useDemoServer } from './helpers.js';

const server = useDemoServer({ responseCacheEntries: 0 });
const PROMPT = 'Once upon a time, there was a little dog named Max.';

interface Logprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}
interface Choice {
  text: string;
  finish_reason: string;
  token_ids?: number[];
  logprobs: Logprobs | null;
}
interface Completion {
  choices: Choice[];
  usage: { prompt_tokens: number; completion_tokens: number };
}

async function complete(extra: Record<string, unknown>): Promise<Completion> {
  const r = await postJson(`${server().url}/v1/completions`, { model: 'demo-stories', prompt: PROMPT, temperature: 0, ...extra });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json as unknown as Completion;
}

async function stream(extra: Record<string, unknown>): Promise<Choice[]> {
  const r = await fetch(`${server().url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model: 'demo-stories', prompt: PROMPT, temperature: 0, stream: true, ...extra }),
  });
  expect(r.status).toBe(200);
  return (await readSse(r)).filter((d) => d !== '[DONE]').flatMap((d) => (JSON.parse(d) as Completion).choices);
}

test('echo returns the prompt, then the completion a request without echo gets', async () => {
  const plain = await complete({ max_tokens: 10 });
  const echoed = await complete({ max_tokens: 10, echo: true });
  expect(echoed.choices[0]!.text).toBe(PROMPT + plain.choices[0]!.text);
  expect(echoed.usage.prompt_tokens).toBe(plain.usage.prompt_tokens);
  expect(echoed.usage.completion_tokens).toBe(plain.usage.completion_tokens);
  const chunks = await stream({ max_tokens: 10, echo: true });
  expect(chunks[0]!.text).toBe(PROMPT);
  expect(chunks.map((c) => c.text).join('')).toBe(echoed.choices[0]!.text);
});

test('echo with logprobs: every prompt token with its logprob given the tokens before it (none for the first)', async () => {
  const plain = await complete({ max_tokens: 6, logprobs: 2 });
  const { logprobs, text } = (await complete({ max_tokens: 6, logprobs: 2, echo: true })).choices[0]!;
  const n = [...PROMPT].length; // byte-level vocabulary: one token per ASCII character
  expect(logprobs!.tokens.slice(0, n).join('')).toBe(PROMPT);
  expect(logprobs!.tokens.join('')).toBe(text);
  expect(logprobs!.text_offset).toEqual(Array.from({ length: n + 6 }, (_, i) => i));
  expect(logprobs!.token_logprobs[0]).toBeNull();
  expect(logprobs!.top_logprobs[0]).toBeNull();
  // the completion's own entries are those of a request without echo (whose prompt ran as
  // one chunk, not in scored chunks of 32 rows: the same within rounding)
  expect(logprobs!.tokens.slice(n)).toEqual(plain.choices[0]!.logprobs!.tokens);
  logprobs!.token_logprobs
    .slice(n)
    .forEach((v, i) => expect(Math.abs(v! - plain.choices[0]!.logprobs!.token_logprobs[i]!)).toBeLessThan(1e-3));
  // each prompt token's logprob is what a completion of the text before it gives that token
  for (const k of [3, 9, 17, 30]) {
    const lp = logprobs!.token_logprobs[k]!;
    expect(lp).toBeLessThanOrEqual(0);
    const top = logprobs!.top_logprobs[k]!;
    expect(top[logprobs!.tokens[k]!]).toBe(lp);
    const before = (await complete({ prompt: PROMPT.slice(0, k), max_tokens: 1, logprobs: 20 })).choices[0]!.logprobs!;
    const alternative = before.top_logprobs[0]![PROMPT[k]!];
    if (alternative !== undefined) expect(Math.abs(alternative - lp)).toBeLessThan(1e-3);
    else expect(lp).toBeLessThan(Math.min(...Object.values(before.top_logprobs[0]!)));
  }
});

test('echo with logprobs of a prompt that starts inside a character: its first token is that byte, and the offsets count characters', async () => {
  // byte-level vocabulary: é is two tokens, neither a character of its own
  const prompt = 'éclair and crème';
  const r = await postJson(`${server().url}/v1/completions`, {
    model: 'demo-stories',
    prompt,
    temperature: 0,
    max_tokens: 0,
    echo: true,
    logprobs: 0,
  });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  const { logprobs, text } = (r.json.choices as Choice[])[0]!;
  expect(text).toBe(prompt);
  expect(logprobs!.tokens.slice(0, 3)).toEqual(['bytes:\\xc3', 'bytes:\\xa9', 'c']);
  // text_offset of each (one-byte) token: the character its byte belongs to
  const bytes = [...new TextEncoder().encode(prompt)];
  const charOfByte = bytes.map((_, i) => [...new TextDecoder().decode(new Uint8Array(bytes.slice(0, i + 1)))].length - 1);
  expect(logprobs!.text_offset).toEqual(charOfByte);
  expect(logprobs!.text_offset.slice(0, 4)).toEqual([0, 0, 1, 2]);
});

test('max_tokens 0 with echo returns the prompt alone, whole and streamed; without echo it is a 400', async () => {
  const { choices, usage } = await complete({ max_tokens: 0, echo: true, logprobs: 0 });
  expect(choices[0]!.text).toBe(PROMPT);
  expect(choices[0]!.finish_reason).toBe('length');
  expect(choices[0]!.logprobs!.tokens).toHaveLength([...PROMPT].length);
  expect(choices[0]!.logprobs!.token_logprobs.slice(1).every((v) => typeof v === 'number' && v <= 0)).toBe(true);
  expect(usage).toMatchObject({ prompt_tokens: [...PROMPT].length, completion_tokens: 0 });
  const chunks = await stream({ max_tokens: 0, echo: true, return_token_ids: true });
  expect(chunks).toHaveLength(1);
  expect(chunks[0]).toMatchObject({ text: PROMPT, finish_reason: 'length', token_ids: [] });
  const refused = await postJson(`${server().url}/v1/completions`, { model: 'demo-stories', prompt: PROMPT, max_tokens: 0 });
  expect(refused.status).toBe(400);
  expect(refused.json.error).toMatchObject({ code: 'invalid_request', param: 'max_tokens' });
});

test('a resumed echo request continues the stream without the prompt, its offsets after it', async () => {
  const whole = (await complete({ max_tokens: 10, echo: true, logprobs: 0, return_token_ids: true })).choices[0]!;
  const ids = whole.token_ids!;
  expect(ids).toHaveLength(10);
  const resumed = (await complete({ max_tokens: 10, echo: true, logprobs: 0, return_token_ids: true, resume_token_ids: ids.slice(0, 4) }))
    .choices[0]!;
  const n = [...PROMPT].length;
  expect(resumed.token_ids).toEqual(ids.slice(4));
  expect(whole.text.endsWith(resumed.text)).toBe(true);
  expect(resumed.text.length).toBe(whole.text.length - n - 4);
  expect(resumed.logprobs!.text_offset).toEqual(whole.logprobs!.text_offset.slice(n + 4));
});

type PromptLogprobs = (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[];

test("vLLM's prompt_logprobs: each prompt token with its logprob and rank, and the top alternatives ranked", async () => {
  const echoed = (await complete({ max_tokens: 2, echo: true, logprobs: 2 })).choices[0]!.logprobs!;
  const r = await postJson(`${server().url}/v1/completions`, {
    model: 'demo-stories',
    prompt: PROMPT,
    temperature: 0,
    max_tokens: 2,
    prompt_logprobs: 2,
  });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  const choice = (r.json.choices as (Choice & { prompt_logprobs: PromptLogprobs })[])[0]!;
  expect(choice.text).not.toContain(PROMPT);
  const scores = choice.prompt_logprobs;
  expect(scores).toHaveLength([...PROMPT].length);
  expect(scores[0]).toBeNull();
  const ids = [...PROMPT].map((c) => c.charCodeAt(0));
  let firstRanked = 0;
  for (let k = 1; k < scores.length; k++) {
    const entry = scores[k]!;
    const own = entry[ids[k]!]!;
    expect(own.decoded_token).toBe(PROMPT[k]);
    // the same score echo reports for the token
    expect(Math.abs(own.logprob - echoed.token_logprobs[k]!)).toBeLessThan(1e-6);
    const alternatives = Object.entries(entry).filter(([id]) => Number(id) !== ids[k]);
    for (const [, alt] of alternatives) expect([1, 2]).toContain(alt.rank);
    if (own.rank === 1) firstRanked++;
    else expect(own.logprob).toBeLessThanOrEqual(Math.max(...Object.values(entry).map((v) => v.logprob)));
    expect(Object.keys(entry).length).toBe(own.rank <= 2 ? 2 : 3);
  }
  expect(firstRanked).toBeGreaterThan(scores.length / 2);
  expect(firstRanked).toBeLessThan(scores.length - 1);
});

test('prompt_logprobs on chat come once for the response; with stream, or above 20, they are a 400', async () => {
  const chat = await postJson(`${server().url}/v1/chat/completions`, {
    model: 'demo-stories',
    messages: [{ role: 'user', content: 'Tell me a story about a cat.' }],
    max_tokens: 2,
    prompt_logprobs: 0,
  });
  expect(chat.status, JSON.stringify(chat.json)).toBe(200);
  const scores = chat.json.prompt_logprobs as PromptLogprobs;
  expect(scores).toHaveLength((chat.json.usage as { prompt_tokens: number }).prompt_tokens);
  expect(scores.slice(1).every((e) => e !== null && Object.keys(e).length === 1)).toBe(true);
  for (const bad of [{ stream: true, prompt_logprobs: 1 }, { prompt_logprobs: 21 }]) {
    const r = await postJson(`${server().url}/v1/completions`, { model: 'demo-stories', prompt: PROMPT, max_tokens: 2, ...bad });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'invalid_request', param: 'prompt_logprobs' });
  }
});
