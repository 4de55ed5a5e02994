/**
 * JSON bodies with a `__proto__` key (or a `constructor` holding a `prototype`): refused by
 * the server and the gateway alike, as a 400 naming the key, not as "not valid JSON".
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import type { InferenceEngine } from '../../src/engine/types.js';
import { buildServer, type AutoGlmServer } from '../../src/server/index.js';

let server: AutoGlmServer;
let gateway: Gateway;
beforeAll(async () => {
  // The body is refused before any handler runs: a stand-in engine that only says it is loaded.
  const engine = { modelName: 'stub' } as unknown as InferenceEngine;
  server = buildServer({ engine, auth: { apiKeys: [], disabled: true }, tokenizerPool: { modelDir: '.', threads: 0, minChars: 0 } });
  gateway = await buildGateway({ auth: { apiKeys: [], disabled: true }, registry: new StaticRegistry([]) });
});
afterAll(async () => {
  await server?.close();
  await gateway?.close();
});

const post = async (app: 'server' | 'gateway', url: string, payload: string | Buffer) => {
  const r = await (app === 'server' ? server.app : gateway.app).inject({
    method: 'POST',
    url,
    payload,
    headers: { 'content-type': 'application/json' },
  });
  return { status: r.statusCode, error: (r.json() as { error: Record<string, unknown> }).error };
};

describe.each(['server', 'gateway'] as const)('the %s', (app) => {
  test.each([
    ['{"model":"m","__proto__":{"admin":true}}', '__proto__', /^The key '__proto__' is not allowed in a request body: it could rewrite/],
    [
      '{"model":"m","messages":[{"role":"user","content":"x","__proto__":{}}]}',
      'messages.0.__proto__',
      /^The key '__proto__' is not allowed in a request body \(in 'messages\.0'\)/,
    ],
    ['{"model":"m","constructor":{"prototype":{"x":1}}}', 'constructor.prototype', /^The key 'constructor\.prototype' is not allowed/],
    // the same key written with \u escapes is the same key once parsed
    ['{"model":"m","\\u005f_proto__":1}', '__proto__', /^The key '__proto__' is not allowed/],
  ])('refuses %s as a 400 naming the key (was "not valid JSON")', async (body, param, message) => {
    for (const url of ['/v1/chat/completions', '/tokenize']) {
      const r = await post(app, url, body);
      expect([r.status, r.error.type, r.error.code, r.error.param]).toEqual([400, 'invalid_request_error', 'invalid_request', param]);
      expect(r.error.message).toMatch(message);
    }
  });

  test('malformed JSON is still invalid_json, now saying where it stopped; a plain "constructor" key is data', async () => {
    const bad = await post(app, '/v1/chat/completions', '{"model": ');
    expect([bad.status, bad.error.code]).toEqual([400, 'invalid_json']);
    expect(bad.error.message).toMatch(/^The request body is not valid JSON: .*JSON/);
    const empty = await post(app, '/tokenize', '');
    expect([empty.status, empty.error.code]).toEqual([400, 'invalid_json']);
    // past the parser: refused later for what it lacks, not for the key
    const plain = await post(app, '/v1/chat/completions', '{"constructor":1,"prototype":2}');
    expect(plain.error.message).not.toMatch(/not allowed in a request body|not valid JSON/);
  });

  test('a text/plain body gets the content-type error (was "must be object" at the server, "must be a JSON object" at the gateway)', async () => {
    const target = app === 'server' ? server.app : gateway.app;
    for (const type of ['text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded']) {
      const r = await target.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: '{"model":"m","messages":[]}',
        headers: { 'content-type': type },
      });
      expect([r.statusCode, r.json()], type).toEqual([
        400,
        {
          error: { message: 'Content-Type must be application/json.', type: 'invalid_request_error', param: null, code: 'invalid_request' },
        },
      ]);
    }
  });

  test('a body that is not UTF-8 is invalid_json (was decoded with U+FFFD in place of the bad bytes); UTF-8 text and a BOM pass', async () => {
    for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80] /* a lone surrogate */, [0xe2, 0x82]]) {
      const body = Buffer.concat([Buffer.from('{"model":"m","prompt":"a'), Buffer.from(bad), Buffer.from('b"}')]);
      const r = await post(app, '/tokenize', body);
      expect([r.status, r.error.type, r.error.code], JSON.stringify(bad)).toEqual([400, 'invalid_request_error', 'invalid_json']);
      expect(r.error.message).toBe('The request body is not valid UTF-8; send JSON encoded as UTF-8.');
    }
    // past the parser: refused later (the stub has no tokenizer), not for the encoding
    for (const good of [Buffer.from('{"model":"m","prompt":"café 🐈"}'), Buffer.from('\ufeff{"model":"m","prompt":"x"}')]) {
      const r = await post(app, '/tokenize', good);
      expect(r.error?.message ?? '').not.toMatch(/UTF-8|not valid JSON/);
    }
  });
});
