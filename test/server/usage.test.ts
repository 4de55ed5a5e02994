/**
 * The usage block of /v1/completions with several prompts (a real server on loopback
 * around the demo engine, prefix caching on, response cache off): each prompt counts once,
 * and so do the prompt tokens the prefix cache gave it.
 */
import { expect, test } from 'vitest';
import { postJson, useDemoServer } from './helpers.js';

const server = useDemoServer({ responseCacheEntries: 0 });
const MODEL = 'demo-stories';
const P1 = 'Once upon a time there was a little girl named Lily. She liked';
const P2 = 'The big brown dog ran to the park and saw a red ball on the';

interface Usage {
  prompt_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

async function usageOf(extra: Record<string, unknown>): Promise<Usage> {
  const r = await postJson(`${server().url}/v1/completions`, { model: MODEL, max_tokens: 1, temperature: 0, ...extra });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.usage as Usage;
}

test('cached_tokens of a list of prompts is the sum over the prompts, each counted once whatever n', async () => {
  for (const prompt of [P1, P2]) await usageOf({ prompt }); // into the prefix cache
  const alone = [
    (await usageOf({ prompt: P1 })).prompt_tokens_details.cached_tokens,
    (await usageOf({ prompt: P2 })).prompt_tokens_details.cached_tokens,
  ];
  expect(alone[0]).toBeGreaterThan(0);
  expect(alone[1]).toBeGreaterThan(0);
  // was the largest of any choice (48), not 48 + 48
  const both = await usageOf({ prompt: [P1, P2] });
  expect(both.prompt_tokens_details.cached_tokens).toBe(alone[0]! + alone[1]!);
  // n choices share their prompt: counted once, like prompt_tokens
  const twice = await usageOf({ prompt: [P1, P2], n: 2 });
  expect(twice.prompt_tokens).toBe(both.prompt_tokens);
  expect(twice.prompt_tokens_details.cached_tokens).toBe(alone[0]! + alone[1]!);
  const one = await usageOf({ prompt: P1, n: 3 });
  expect(one.prompt_tokens_details.cached_tokens).toBe(alone[0]);
});
