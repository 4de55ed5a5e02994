/**
 * /v1/completions options this server does not implement in full (a real server on
 * loopback around the demo engine): best_of is refused with a 400 that names the option
 * and says what is not supported, where it would otherwise change nothing. (echo:
 * echo.test.ts.)
 */
import { expect, test } from 'vitest';
import { postJson, useDemoServer } from './helpers.js';

const server = useDemoServer();
const MODEL = 'demo-stories';

const complete = (extra: Record<string, unknown>) =>
  postJson(`${server().url}/v1/completions`, { model: MODEL, prompt: 'Once upon a time', max_tokens: 2, temperature: 0, ...extra });

function expectRefusal(r: { status: number; json: Record<string, unknown> }, param: string, message: RegExp): void {
  expect(r.status, JSON.stringify(r.json)).toBe(400);
  const error = r.json.error as { code: string; param: string; message: string };
  expect(error.code).toBe('invalid_request');
  expect(error.param).toBe(param);
  expect(error.message).toMatch(message);
}

test('best_of: below n is a 400 naming best_of and n, above n a 400 saying it is not supported; equal to n is n', async () => {
  // best_of 1 with n 2 used to pass
  expectRefusal(await complete({ best_of: 1, n: 2 }), 'best_of', /best_of \(1\) must be at least n \(2\)/);
  // was "must be <= 1", which said nothing of why
  expectRefusal(await complete({ best_of: 3, n: 2 }), 'best_of', /best_of greater than n is not supported/);
  expectRefusal(await complete({ best_of: 2 }), 'best_of', /best_of greater than n is not supported/);
  for (const [extra, choices] of [
    [{ best_of: 2, n: 2 }, 2],
    [{ best_of: 1 }, 1],
    [{ best_of: null, n: 2 }, 2],
  ] as const) {
    const r = await complete(extra);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect((r.json.choices as unknown[]).length).toBe(choices);
  }
});
