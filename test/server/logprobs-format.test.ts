/**
 * Logprobs of tokens that are only part of a UTF-8 character, on a real server on loopback
 * around the real engine on a tiny generated model with Qwen3's real tokenizer. logit_bias
 * makes the model write only three such tokens: 9284 (bytes F0 9F, the start of a 4-byte
 * emoji), 104 (AB) and 254 (A0), which decode alone to U+FFFD. Each must keep its own
 * bytes and a distinct `bytes:\xf0\x9f` string (OpenAI's form), the completions' top
 * alternatives must not collide, and text_offset must point into the returned text.
 * Completions' top_logprobs also hold the sampled token (with logprobs 0, it alone).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { completionLogprobs } from '../../src/server/routes/logprobs-format.js';
import { API_KEY, postJson, readSse, startServer, type RunningServer } from './helpers.js';

const MODEL = 'qwen3-tiny';
/** The biased tokens' bytes, and their strings as OpenAI writes tokens that are not valid UTF-8 alone. */
const PARTS: Record<number, { bytes: number[]; token: string }> = {
  9284: { bytes: [0xf0, 0x9f], token: 'bytes:\\xf0\\x9f' },
  104: { bytes: [0xab], token: 'bytes:\\xab' },
  254: { bytes: [0xa0], token: 'bytes:\\xa0' },
};
const FORCED = { logit_bias: { 9284: 100, 104: 100, 254: 100 }, temperature: 1.5, seed: 6, max_tokens: 6, return_token_ids: true };

let root: string;
let engine: Engine;
let running: RunningServer;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-logprobs-'));
  const model = await generateTestModel(join(root, 'model'), {
    architecture: 'qwen3',
    tokenizer: 'qwen3',
    hidden: 64,
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    layers: 2,
    intermediate: 128,
    context: 512,
  });
  engine = await Engine.load(model.dir, { kvCacheBytes: 16 * 1024 * 1024, servedModelName: MODEL });
  running = await startServer({ engine });
});

afterAll(async () => {
  await running?.close();
  await engine?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

const characters = (s: string): number => [...s].length;
const decode = (bytes: number[], stream = false): string =>
  new TextDecoder('utf-8', { ignoreBOM: true }).decode(Uint8Array.from(bytes), { stream });

/** The character of TextDecoder's text of `bytes` that byte k is part of, found with TextDecoder alone. */
function characterOfByte(bytes: number[], k: number): number {
  const whole = characters(decode(bytes.slice(0, k))); // a cut-off sequence at the end is one U+FFFD
  const held = characters(decode(bytes.slice(0, k), true)); // ... held back instead
  if (whole === held) return whole;
  // byte k continues the held sequence if with it that sequence is still one character
  return characters(decode(bytes.slice(0, k + 1))) === whole ? held : whole;
}

interface ChatEntry {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

test('chat: each token keeps its own bytes and a distinct bytes: string, its alternatives too', async () => {
  const r = await postJson(`${running.url}/v1/chat/completions`, {
    model: MODEL,
    messages: [{ role: 'user', content: 'hi' }],
    logprobs: true,
    top_logprobs: 2,
    ...FORCED,
  });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  const choice = (r.json.choices as { message: { content: string }; token_ids: number[]; logprobs: { content: ChatEntry[] } }[])[0]!;
  const content = choice.logprobs.content;
  expect(content).toHaveLength(6);
  content.forEach((entry, i) => {
    // was "\ufffd" with bytes [239, 191, 189] (U+FFFD's) for every one of them
    expect(entry).toMatchObject(PARTS[choice.token_ids[i]!]!);
    expect(entry.top_logprobs).toHaveLength(2);
    expect(new Set(entry.top_logprobs.map((t) => t.token)).size).toBe(2);
    for (const t of entry.top_logprobs) expect(Object.values(PARTS)).toContainEqual({ bytes: t.bytes, token: t.token });
  });
  // joined, the bytes are the text (what OpenAI's bytes field is for)
  expect(decode(content.flatMap((e) => e.bytes))).toBe(choice.message.content);
});

/** A streamed completion's chunks. */
async function sse(url: string, body: object): Promise<{ choices: { logprobs: CompletionLogprobs }[] }[]> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify(body),
  });
  return (await readSse(response))
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as { choices: { logprobs: CompletionLogprobs }[] });
}

interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

test('completions: distinct tokens and top keys, text_offset where each token begins in the text, streamed or not', async () => {
  const body = { model: MODEL, prompt: 'hello', logprobs: 2, ...FORCED };
  const r = await postJson(`${running.url}/v1/completions`, body);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  const choice = (r.json.choices as { text: string; token_ids: number[]; logprobs: CompletionLogprobs }[])[0]!;
  const lp = choice.logprobs;
  const ids = choice.token_ids;
  // was six "\ufffd"
  expect(lp.tokens).toEqual(ids.map((id) => PARTS[id]!.token));
  const bytes = ids.flatMap((id) => PARTS[id]!.bytes);
  expect(decode(bytes)).toBe(choice.text);
  lp.top_logprobs.forEach((top, i) => {
    // the two alternatives were one key, and the one kept could be below the chosen token's own logprob;
    // the sampled token is there too (OpenAI: up to logprobs + 1 entries)
    expect(Object.keys(top).length).toBeGreaterThanOrEqual(2);
    expect(Object.keys(top).length).toBeLessThanOrEqual(3);
    expect(top[lp.tokens[i]!]).toBe(lp.token_logprobs[i]);
    for (const key of Object.keys(top)) expect(Object.values(PARTS).map((p) => p.token)).toContain(key);
    expect(Math.max(...Object.values(top))).toBeGreaterThanOrEqual(lp.token_logprobs[i]! - 1e-6);
  });
  // each token at the character its first byte is part of (were 0..5, past the text's 4 characters here)
  let at = 0;
  const firstBytes = ids.map((id) => (at += PARTS[id]!.bytes.length) - PARTS[id]!.bytes.length);
  expect(lp.text_offset).toEqual(firstBytes.map((k) => characterOfByte(bytes, k)));
  expect(Math.max(...lp.text_offset)).toBeLessThan(characters(choice.text));

  const chunks = await sse(`${running.url}/v1/completions`, { ...body, stream: true });
  const streamed = chunks.flatMap((c) => c.choices).map((c) => c.logprobs!);
  expect(streamed.flatMap((l) => l.tokens)).toEqual(lp.tokens);
  expect(streamed.flatMap((l) => l.text_offset)).toEqual(lp.text_offset);
});

test('completions with logprobs 0: each top_logprobs holds the sampled token, as OpenAI and vLLM return it', async () => {
  for (const stream of [false, true]) {
    const body = { model: MODEL, prompt: 'hello', logprobs: 0, ...FORCED, stream };
    const lps: CompletionLogprobs[] = stream
      ? (await sse(`${running.url}/v1/completions`, body)).flatMap((c) => c.choices.map((x) => x.logprobs))
      : [((await postJson(`${running.url}/v1/completions`, body)).json.choices as { logprobs: CompletionLogprobs }[])[0]!.logprobs];
    const tokens = lps.flatMap((l) => l.tokens);
    const logprobs = lps.flatMap((l) => l.token_logprobs);
    expect(tokens).toHaveLength(6);
    // was [{}, {}, ...]
    expect(lps.flatMap((l) => l.top_logprobs)).toEqual(tokens.map((t, i) => ({ [t]: logprobs[i] })));
  }
});

test('text_offset follows the text TextDecoder makes of any bytes: cut-off and invalid sequences are one U+FFFD each', () => {
  const pool = [0x41, 0xf0, 0x9f, 0x98, 0x80, 0xab, 0xa0, 0xe2, 0x82, 0xac, 0xc3, 0xa9, 0xed, 0xf4, 0x90, 0xff, 0xc0, 0xe0, 0x8f, 0xbf];
  let seed = 7;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % pool.length;
  for (let t = 0; t < 5000; t++) {
    const bytes = Array.from({ length: 1 + (t % 8) }, () => pool[next()]!);
    const entries = bytes.map((b, i) => ({ tokenId: i, token: `${i}`, bytes: [b], logprob: 0, top: [] }));
    const offsets = completionLogprobs(entries, 0, 0).text_offset;
    expect(offsets, bytes.map((b) => b.toString(16)).join(' ')).toEqual(bytes.map((_, k) => characterOfByte(bytes, k)));
  }
});
