import { afterAll, beforeAll, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import { scrapeSum } from './support/metrics.js';
import { waitFor } from './support/processes.js';
import { SseStub } from './support/sse-stub.js';

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
  gateway = await buildGateway({
    registry: new StaticRegistry([cut.url, good.url]),
    auth: { apiKeys: [], disabled: true },
    health: { probeIntervalMs: 100 },
    // Equal loads: the first listed (the one that cuts) gets the first attempt every time.
    balancer: { random: () => 0 },
  });
  url = await gateway.listen({ port: 0, host: '127.0.0.1' });
  await waitFor(() => gateway.health.healthy().length === 2, 5000, 'stubs healthy');
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
  const only = await buildGateway({
    registry: new StaticRegistry([cut.url]),
    auth: { apiKeys: [], disabled: true },
    health: { probeIntervalMs: 100, passiveFailureThreshold: 100 },
  });
  try {
    const u = await only.listen({ port: 0, host: '127.0.0.1' });
    await waitFor(() => only.health.healthy().length === 1, 5000, 'stub healthy');
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
  const g = await buildGateway({
    registry: new StaticRegistry([stall.url, good.url]),
    auth: { apiKeys: [], disabled: true },
    health: { probeIntervalMs: 100 },
    balancer: { random: () => 0 },
    idleTimeoutMs: 300,
    requestTimeoutMs: 20_000,
  });
  try {
    const u = await g.listen({ port: 0, host: '127.0.0.1' });
    await waitFor(() => g.health.healthy().length === 2, 5000, 'stubs healthy');
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
