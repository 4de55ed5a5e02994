/**
 * text_offset of a resumed completion (a real server on loopback around the demo engine):
 * a request that continues from resume_token_ids (what the gateway sends after a worker
 * died mid-stream) goes on counting from the end of the text the client already has, so the
 * stitched stream's offsets are the uninterrupted run's. They started again at 0.
 */
import { expect, test } from 'vitest';
import { postJson, readSse, API_KEY, useDemoServer } from './helpers.js';

const server = useDemoServer({ responseCacheEntries: 0 });

interface Choice {
  text: string;
  token_ids: number[];
  logprobs: { text_offset: number[] } | null;
}

const body = { model: 'demo-stories', prompt: 'Once upon a time', max_tokens: 12, temperature: 0, logprobs: 1, return_token_ids: true };

test('a resumed completion continues the uninterrupted run text_offset, whole and streamed', async () => {
  const whole = (await postJson(`${server().url}/v1/completions`, body)).json.choices as Choice[];
  const { text, token_ids: ids, logprobs } = whole[0]!;
  const offsets = logprobs!.text_offset;
  expect(offsets).toHaveLength(12);
  expect(offsets[5]).toBeGreaterThan(0);

  const resumed = (await postJson(`${server().url}/v1/completions`, { ...body, resume_token_ids: ids.slice(0, 5) })).json
    .choices as Choice[];
  expect(resumed[0]!.token_ids).toEqual(ids.slice(5));
  expect(resumed[0]!.logprobs!.text_offset).toEqual(offsets.slice(5));

  const r = await fetch(`${server().url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ ...body, stream: true, resume_token_ids: ids.slice(0, 5) }),
  });
  const streamed = (await readSse(r))
    .filter((d) => d !== '[DONE]')
    .flatMap((d) => (JSON.parse(d) as { choices: Choice[] }).choices)
    .flatMap((c) => c.logprobs?.text_offset ?? []);
  expect(streamed).toEqual(offsets.slice(5));
  expect(text.length).toBeGreaterThan(offsets[5]!);
});
