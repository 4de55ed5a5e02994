/**
 * CORS at the HTTP surface (real servers on loopback around the demo engine): preflights
 * are answered before authentication, answers to an allowed origin carry the headers a
 * browser needs (errors and SSE streams included), other origins get none, and a server
 * without --allowed-origins behaves as before. The option's parser refuses what would never
 * match a browser's Origin header.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { InferenceEngine } from '../../src/engine/types.js';
import { parseAllowedOrigins } from '../../src/server/cors.js';
import { API_KEY, STORY_PROMPT, loadDemoEngine, readSse, startServer, type RunningServer } from './helpers.js';

const APP = 'https://app.example.com';
const OTHER = 'https://evil.example.net';

let engine: InferenceEngine;
let listed: RunningServer;
let anyOrigin: RunningServer;
let plain: RunningServer;

beforeAll(async () => {
  engine = await loadDemoEngine({ responseCacheEntries: 0 });
  listed = await startServer({ engine, cors: { allowedOrigins: [APP, 'http://localhost:5173'] } });
  anyOrigin = await startServer({ engine, cors: { allowedOrigins: ['*'] } });
  plain = await startServer({ engine });
});

afterAll(async () => {
  await listed?.close();
  await anyOrigin?.close();
  await plain?.close();
  await engine?.close();
});

const preflight = (url: string, origin: string, requestHeaders?: string) =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      ...(requestHeaders !== undefined ? { 'access-control-request-headers': requestHeaders } : {}),
    },
  });

const chat = (url: string, origin: string, extra: Record<string, unknown> = {}, key: string | null = API_KEY) =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { origin, 'content-type': 'application/json', ...(key !== null ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify({ model: 'demo-stories', messages: STORY_PROMPT, max_tokens: 3, temperature: 0, ...extra }),
  });

describe('a server with listed origins', () => {
  test('answers a preflight from a listed origin with 204 and the methods and headers it may use, without an API key', async () => {
    const r = await preflight(listed.url, APP, 'authorization, content-type');
    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-origin')).toBe(APP);
    expect(r.headers.get('vary')).toContain('Origin');
    expect(r.headers.get('access-control-allow-methods')).toContain('POST');
    expect(r.headers.get('access-control-allow-headers')).toBe('authorization, content-type');
    expect(Number(r.headers.get('access-control-max-age'))).toBeGreaterThan(0);
  });

  test('refuses a preflight from an unlisted origin with a 403 in the OpenAI error shape', async () => {
    const r = await preflight(listed.url, OTHER);
    expect(r.status).toBe(403);
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
    const body = (await r.json()) as { error: { code: string; type: string; message: string } };
    expect(body.error.code).toBe('origin_not_allowed');
    expect(body.error.type).toBe('permission_error');
    expect(body.error.message).toContain(OTHER);
  });

  test('a generation from a listed origin carries the CORS headers, and so does its 401 without a key', async () => {
    const ok = await chat(listed.url, APP);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(APP);
    expect(ok.headers.get('access-control-expose-headers')).toContain('x-request-id');
    expect(((await ok.json()) as { choices: unknown[] }).choices).toHaveLength(1);

    const denied = await chat(listed.url, APP, {}, null);
    expect(denied.status).toBe(401);
    expect(denied.headers.get('access-control-allow-origin')).toBe(APP);
    expect(((await denied.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
  });

  test('an SSE stream to a listed origin carries the CORS headers', async () => {
    const r = await chat(listed.url, 'http://localhost:5173', { stream: true });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/event-stream');
    expect(r.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    const events = await readSse(r);
    expect(events.at(-1)).toBe('[DONE]');
  });

  test('a request from an unlisted origin is served without CORS headers (the browser withholds it)', async () => {
    const r = await chat(listed.url, OTHER);
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
    await r.arrayBuffer();
  });
});

test("'*' allows any origin with a literal '*' (no Vary), preflight and GET alike", async () => {
  const p = await preflight(anyOrigin.url, OTHER);
  expect(p.status).toBe(204);
  expect(p.headers.get('access-control-allow-origin')).toBe('*');
  expect(p.headers.get('access-control-allow-headers')).toContain('authorization');
  const models = await fetch(`${anyOrigin.url}/v1/models`, { headers: { origin: OTHER, authorization: `Bearer ${API_KEY}` } });
  expect(models.status).toBe(200);
  expect(models.headers.get('access-control-allow-origin')).toBe('*');
  expect(models.headers.get('vary')).toBeNull();
});

test('without allowed origins there are no CORS headers and a preflight is not answered as one', async () => {
  const p = await preflight(plain.url, APP);
  expect(p.status).not.toBe(204);
  expect(p.headers.get('access-control-allow-origin')).toBeNull();
  const r = await chat(plain.url, APP);
  expect(r.status).toBe(200);
  expect(r.headers.get('access-control-allow-origin')).toBeNull();
  await r.arrayBuffer();
});

describe('parseAllowedOrigins', () => {
  test('takes origins and a lone *', () => {
    expect(parseAllowedOrigins('https://a.example.com, http://localhost:5173', '--allowed-origins')).toEqual([
      'https://a.example.com',
      'http://localhost:5173',
    ]);
    expect(parseAllowedOrigins(' * ', '--allowed-origins')).toEqual(['*']);
  });

  test.each([
    ['', 'comma-separated'],
    ['*,https://a.example.com', 'cannot be combined'],
    ['a.example.com', 'not an origin'],
    ['https://a.example.com/', 'no path'],
    ['https://a.example.com/app', 'no path'],
    ['ftp://a.example.com', 'http or https'],
  ])('refuses %j naming the flag', (value, why) => {
    expect(() => parseAllowedOrigins(value, '--allowed-origins')).toThrow(why);
    expect(() => parseAllowedOrigins(value, '--allowed-origins')).toThrow('--allowed-origins');
  });
});
