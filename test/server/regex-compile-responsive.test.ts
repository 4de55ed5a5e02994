/**
 * A regex that takes about a second to refuse (an ambiguous repeat) and a JSON Schema that
 * takes a few hundred ms to find too large are compiled in slices before admission (a real
 * server on loopback around the demo engine): the server answers /health many times
 * meanwhile (compiled inline it answered nothing for that time, and a gateway's probes
 * ejected the worker), and the client still gets its 400.
 */
import { expect, test } from 'vitest';
import { postJson, useDemoServer } from './helpers.js';

const server = useDemoServer({ responseCacheEntries: 0 });

/** Posts a completion and asks /health meanwhile, one request at a time: the answer and how many /health calls were answered before it. */
async function healthAnswersDuring(body: Record<string, unknown>): Promise<{ r: Awaited<ReturnType<typeof postJson>>; answered: number }> {
  const url = server().url;
  let pending = true;
  const answer = postJson(`${url}/v1/completions`, { model: 'demo-stories', prompt: 'Once upon a time', max_tokens: 4, ...body }).finally(
    () => {
      pending = false;
    },
  );
  let answered = 0;
  while (pending) {
    const h = await fetch(`${url}/health`);
    await h.arrayBuffer();
    if (pending && h.status === 200) answered++;
  }
  return { r: await answer, answered };
}

test('/health answers while a slow pattern is refused', async () => {
  const { r, answered } = await healthAnswersDuring({ guided_regex: '(\\w+ ?){1,100}' });
  expect(r.status).toBe(400);
  expect((r.json.error as { param: string; message: string }).param).toBe('guided_regex');
  expect((r.json.error as { message: string }).message).toContain('too complex');
  expect(answered).toBeGreaterThan(5);
});

test('/health answers while a schema too large for constrained decoding is compiled and refused', async () => {
  const properties: Record<string, unknown> = {};
  for (let i = 0; i < 400; i++)
    properties[`field_${i}`] = {
      type: 'object',
      properties: { a: { type: 'integer' }, b: { enum: Array.from({ length: 20 }, (_, j) => `v${i}_${j}`) } },
    };
  const { r, answered } = await healthAnswersDuring({
    response_format: { type: 'json_schema', json_schema: { name: 'wide', schema: { type: 'object', properties } } },
  });
  expect(r.status).toBe(400);
  expect((r.json.error as { param: string }).param).toBe('response_format');
  expect((r.json.error as { message: string }).message).toContain('too large');
  expect(answered).toBeGreaterThan(5);
});
