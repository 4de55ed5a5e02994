import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { scrapeSum } from './support/metrics.js';
import { SseStub, gatewayOverStubs } from './support/sse-stub.js';

// The routes the gateway forwards whole (/tokenize, /detokenize, /v1/models): a worker that
// sends its headers and then dies mid-body is a worker failure like a reset before the
// headers (retried elsewhere, counted against it). It used to escape as the gateway's own
// HTTP 500 internal_error, not retried and not counted.
let cut: SseStub;
let good: SseStub;
let gateway: Gateway;
let url: string;

beforeAll(async () => {
  cut = await new SseStub((_body, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
    res.write('{"tokens":[1,');
    setTimeout(() => res.destroy(), 20);
  }).start();
  good = await new SseStub((body, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ tokens: [1, 2, 3], echo: body.prompt }));
  }).start();
  // the first listed (the one that cuts) gets the first attempt every time
  ({ gateway, url } = await gatewayOverStubs([cut, good], { firstListedFirst: true }));
});

afterAll(async () => {
  await gateway?.close();
  await cut?.stop();
  await good?.stop();
});

test('a worker cut mid-body on /tokenize: retried on another worker, and counted against the one that failed', async () => {
  const r = await fetch(`${url}/tokenize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'hi' }),
  });
  expect(r.status).toBe(200);
  expect(await r.json()).toEqual({ tokens: [1, 2, 3], echo: 'hi' });
  expect(cut.bodies.length).toBe(1);
  expect(await scrapeSum(url, 'autoglm:gateway_retries_total')).toBe(1);
});

test('when every worker cuts the body, the client gets a 502 upstream_error, not an internal error', async () => {
  const { gateway: only, url: u } = await gatewayOverStubs([cut], { health: { probeIntervalMs: 100, passiveFailureThreshold: 100 } });
  try {
    const r = await fetch(`${u}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":"hi"}' });
    expect(r.status).toBe(502);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('upstream_error');
  } finally {
    await only.close();
  }
});

test('a non-streamed completion whose body stalls after the headers: cut after the idle timeout and retried, not held to the deadline', async () => {
  const stall = await new SseStub((_body, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
    res.write('{"id":"cmpl-stall","choices":[');
  }).start();
  const { gateway: g, url: u } = await gatewayOverStubs([stall, good], {
    firstListedFirst: true,
    idleTimeoutMs: 300,
    requestTimeoutMs: 20_000,
  });
  try {
    const t0 = performance.now();
    const r = await fetch(`${u}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt: 'hi', max_tokens: 3 }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { echo: string }).echo).toBe('hi');
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(stall.bodies.length).toBe(1);
  } finally {
    await g.close();
    await stall.stop();
  }
});
