/**
 * /v1/completions options this server does not implement in full (a real server on
 * loopback around the demo engine): echo is refused with a 400 that names the option and
 * says it is not supported.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { InferenceEngine } from '../../src/engine/types.js';
import { loadDemoEngine, postJson, startServer, type RunningServer } from './helpers.js';

let engine: InferenceEngine;
let running: RunningServer;
const MODEL = 'demo-stories';

beforeAll(async () => {
  engine = await loadDemoEngine();
  running = await startServer({ engine });
});

afterAll(async () => {
  await running?.close();
  await engine?.close();
});

const complete = (extra: Record<string, unknown>) =>
  postJson(`${running.url}/v1/completions`, { model: MODEL, prompt: 'Once upon a time', max_tokens: 2, temperature: 0, ...extra });

function expectRefusal(r: { status: number; json: Record<string, unknown> }, param: string, message: RegExp): void {
  expect(r.status, JSON.stringify(r.json)).toBe(400);
  const error = r.json.error as { code: string; param: string; message: string };
  expect(error.code).toBe('invalid_request');
  expect(error.param).toBe(param);
  expect(error.message).toMatch(message);
}

test('echo: true is a 400 saying echo is not supported; false and null are fine', async () => {
  // was "must be equal to one of the allowed values"
  expectRefusal(await complete({ echo: true }), 'echo', /echo is not supported/);
  for (const echo of [false, null]) expect((await complete({ echo })).status).toBe(200);
});
