/**
 * logit_bias and response_format at the HTTP surface (a real server on loopback around the
 * demo engine): the bias reaches the GPU sampler from both routes, bad values are 400s naming
 * the parameter, and every response_format type is accepted.
 */
import { describe, expect, test } from 'vitest';
import { STORY_PROMPT, postJson, useDemoServer } from './helpers.js';

const server = useDemoServer({ responseCacheEntries: 0 });
const MODEL = 'demo-stories';

const chat = (extra: Record<string, unknown>) =>
  postJson(`${server().url}/v1/chat/completions`, {
    model: MODEL,
    messages: STORY_PROMPT,
    max_tokens: 5,
    temperature: 0,
    ignore_eos: true,
    return_token_ids: true,
    ...extra,
  });

const tokenIds = (r: { json: Record<string, unknown> }): number[] => (r.json.choices as { token_ids: number[] }[])[0]!.token_ids;

describe('logit_bias', () => {
  test('forces a token in chat and bans one in completions', async () => {
    const forced = await chat({ logit_bias: { '70': 100 } });
    expect(forced.status, JSON.stringify(forced.json)).toBe(200);
    expect(tokenIds(forced)).toEqual([70, 70, 70, 70, 70]);

    const completion = (extra: Record<string, unknown>) =>
      postJson(`${server().url}/v1/completions`, {
        model: MODEL,
        prompt: 'Once upon a time',
        max_tokens: 5,
        temperature: 0,
        ignore_eos: true,
        return_token_ids: true,
        ...extra,
      });
    const plain = tokenIds(await completion({}));
    const banned = tokenIds(await completion({ logit_bias: { [String(plain[0])]: -100 } }));
    expect(banned).toHaveLength(5);
    expect(banned).not.toContain(plain[0]);
  });

  test.each([
    [{ '07': 1 }, 'logit_bias'],
    [{ '99999999': 1 }, 'logit_bias'],
    [{ '5': 101 }, 'logit_bias.5'],
    [{ '5': 'x' }, 'logit_bias.5'],
    [[1], 'logit_bias'],
  ])('%j is a 400 naming %s', async (bias, param) => {
    const r = await chat({ logit_bias: bias });
    expect(r.status, JSON.stringify(r.json)).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'invalid_request', param });
  });
});

describe('response_format', () => {
  test('text is free text; json_object and json_schema are accepted (enforced: response-format.test.ts)', async () => {
    expect((await chat({ response_format: { type: 'text' } })).status).toBe(200);
    for (const format of [{ type: 'json_object' }, { type: 'json_schema', json_schema: { name: 'x', schema: {} } }]) {
      const r = await chat({ response_format: format });
      expect(r.status, JSON.stringify(r.json)).toBe(200);
    }
  });
});
