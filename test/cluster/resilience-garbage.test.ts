import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { call } from './support/client.js';
import { SseStub, tokenEvent, usageEvent, gatewayOverStubs } from './support/sse-stub.js';

// A "worker" that answers a stream with 200 and then bytes that never make an SSE event
// (a wrong URL, a proxy, a broken worker): the gateway buffered them without bound, for
// as long as they kept coming (every read re-armed the idle timer), and the client waited.
// Now an event longer than MAX_EVENT_CHARS fails the attempt and it is retried elsewhere.
let garbage: SseStub;
let good: SseStub;
let gateway: Gateway;
let url: string;
let garbageBytes = 0;

beforeAll(async () => {
  garbage = await new SseStub((_body, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const chunk = 'x'.repeat(64 * 1024);
    const more = (): void => {
      // Up to 24 MiB, then it stops: a bound for the test, far past any sane event.
      if (res.destroyed || garbageBytes > 24 * 1024 * 1024) return void res.end();
      garbageBytes += chunk.length;
      if (res.write(chunk)) setImmediate(more);
      else res.once('drain', more);
    };
    more();
  }).start();
  good = await new SseStub((_body, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (let i = 0; i < 3; i++) res.write(tokenEvent(100 + i, `t${i}`, i === 2 ? 'length' : null));
    res.write(usageEvent(1, 3));
    res.end('data: [DONE]\n\n');
  }).start();
  ({ gateway, url } = await gatewayOverStubs([garbage, good], { firstListedFirst: true }));
});

afterAll(async () => {
  await gateway?.close();
  await garbage?.stop();
  await good?.stop();
});

test('a stream of bytes that never completes an event is cut after MAX_EVENT_CHARS and retried on another worker', async () => {
  const r = await call(url, '/v1/completions', { model: 'm', prompt: 'hi', max_tokens: 3, stream: true });
  expect([r.status, r.error, r.text]).toEqual([200, null, 't0t1t2']);
  expect(garbage.bodies.length).toBe(1);
  expect(garbageBytes).toBeLessThan(16 * 1024 * 1024);
});
