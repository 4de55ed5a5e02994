import { request } from 'node:http';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { scrapeSum } from './support/metrics.js';
import { waitFor } from './support/processes.js';
import { SseStub, tokenEvent, usageEvent, gatewayOverStubs } from './support/sse-stub.js';

// A client that reads its stream slowly fills its socket; the gateway then pauses the
// worker's body (backpressure). That silence is the client's: it must not count as the
// worker going idle, which cut the stream, blamed a healthy worker and resumed it
// elsewhere (twice, with three attempts) for nothing.
const TOKENS = 200;
const CHUNK = 'x'.repeat(32 * 1024); // 200 x 32 KiB: far more than loopback socket buffers hold
let stub: SseStub;
let gateway: Gateway;
let url: string;

beforeAll(async () => {
  stub = await new SseStub((body, res) => {
    const from = Array.isArray(body.resume_token_ids) ? body.resume_token_ids.length : 0;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (let i = from; i < TOKENS; i++) res.write(tokenEvent(i, CHUNK, i === TOKENS - 1 ? 'length' : null));
    res.write(usageEvent(1, TOKENS));
    res.end('data: [DONE]\n\n');
  }).start();
  ({ gateway, url } = await gatewayOverStubs([stub], { idleTimeoutMs: 300 }));
});

afterAll(async () => {
  await gateway?.close();
  await stub?.stop();
});

test('a client that stops reading for longer than the idle timeout gets its whole stream from one attempt; the worker is not blamed', async () => {
  const text = await new Promise<string>((resolve, reject) => {
    const req = request(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      // Read nothing for five idle timeouts, then everything.
      res.pause();
      setTimeout(() => {
        let all = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (all += d));
        res.on('end', () => resolve(all));
        res.on('error', reject);
        res.resume();
      }, 1500);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model: 'm', prompt: 'hi', max_tokens: TOKENS, stream: true }));
  });
  const events = text.split('\n\n').filter((e) => e.startsWith('data: '));
  expect(events.at(-1)).toBe('data: [DONE]');
  expect(events.filter((e) => e.includes('"error"'))).toEqual([]);
  expect(events.filter((e) => e.includes(CHUNK)).length).toBe(TOKENS);
  expect(stub.bodies.length).toBe(1);
  expect(await scrapeSum(url, 'autoglm:gateway_retries_total')).toBe(0);
  expect(await scrapeSum(url, 'autoglm:gateway_failovers_total')).toBe(0);
  expect(await scrapeSum(url, `autoglm:gateway_worker_requests_total{worker="${stub.url}",outcome="timeout"}`)).toBe(0);
});

test('a client that takes nothing for streamStallTimeoutMs is cut off, and the request ends', async () => {
  const stalled = await gatewayOverStubs([stub], { idleTimeoutMs: 60_000, streamStallTimeoutMs: 300 });
  try {
    const req = request(`${stalled.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) =>
      // never read: the gateway's writes wait on this client once the socket buffers are full
      res.pause(),
    );
    req.on('error', () => undefined);
    req.end(JSON.stringify({ model: 'm', prompt: 'hi', max_tokens: TOKENS, stream: true }));
    await waitFor(async () => (await scrapeSum(stalled.url, 'autoglm:gateway_requests_in_flight')) === 1, 5000, 'the stream under way');
    // was held until the request's deadline (600 s by default)
    await waitFor(
      async () => (await scrapeSum(stalled.url, 'autoglm:gateway_requests_in_flight')) === 0,
      10_000,
      'the stalled stream ended',
    );
    req.destroy();
  } finally {
    await stalled.gateway.close();
  }
});
