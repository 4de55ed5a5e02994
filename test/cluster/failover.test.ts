import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import type { GatewayOptions } from '../../src/cluster/gateway/options.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import { call, type Outcome } from './support/client.js';
import { scrapeSum } from './support/metrics.js';
import { freePort, MODEL, spawnWorker, stopAll, waitFor, waitReady, type WorkerProcess } from './support/processes.js';
import { ReadyStub } from './support/ready-stub.js';

// Failures before the first token, the retry budget, the request deadline and passive
// outlier detection, each through a real gateway on loopback. The failing "workers" are
// loopback servers (ReadyStub) whose /ready says 200 while their traffic hangs, answers
// 500 or 503 or resets; the healthy one is a real worker process.
const SECRET = 'failover-secret';
let worker: WorkerProcess;
const stubs: ReadyStub[] = [];
const gateways: Gateway[] = [];
const secretHeader = { 'x-autoglm-cluster-secret': SECRET };
const body = { model: MODEL, prompt: 'The dog', max_tokens: 6, temperature: 0 };
let reference: Outcome;

beforeAll(async () => {
  worker = spawnWorker({ port: await freePort(), clusterSecret: SECRET });
  await waitReady(worker);
  reference = await call(worker.url, '/v1/completions', body, secretHeader);
  expect(reference.status).toBe(200);
});

afterAll(async () => {
  for (const g of gateways) await g.close();
  for (const s of stubs) await s.stop();
  await stopAll([worker].filter(Boolean));
});

async function stub(traffic: ReadyStub['traffic']): Promise<ReadyStub> {
  const s = await new ReadyStub().start();
  s.traffic = traffic;
  stubs.push(s);
  return s;
}

/**
 * A gateway over `urls` (in that order), all healthy before it returns. The balancer's
 * random source is fixed at 0: between equally loaded workers it then takes the first
 * listed, so the misbehaving worker listed first gets the first attempt every time and the
 * counts below are exact rather than likely.
 */
async function gatewayOver(urls: string[], options: Partial<GatewayOptions> = {}): Promise<{ g: Gateway; url: string }> {
  const g = await buildGateway({
    registry: new StaticRegistry(urls),
    auth: { apiKeys: [], disabled: true },
    clusterSecret: SECRET,
    balancer: { random: () => 0 },
    ...options,
    health: { probeIntervalMs: 100, ...options.health },
  });
  gateways.push(g);
  const url = await g.listen({ port: 0, host: '127.0.0.1' });
  await waitFor(() => g.health.healthy().length === urls.length, 5000, 'every worker healthy');
  return { g, url };
}

const workersView = async (
  url: string,
): Promise<{ id: string; state: string; ejections: number; ejectedForMs: number; lastProbe: string }[]> =>
  ((await (await fetch(`${url}/cluster/workers`)).json()) as { workers: never[] }).workers;

describe('failover before the first token', () => {
  test('a worker answering HTTP 500: each request is retried on the other worker and succeeds; retries counted', async () => {
    const bad = await stub('status-500');
    const { g, url } = await gatewayOver([bad.url, worker.url]);
    const plain = await call(url, '/v1/completions', body);
    const streamed = await call(url, '/v1/completions', { ...body, stream: true });
    for (const r of [plain, streamed]) {
      expect([r.status, r.error]).toEqual([200, null]);
      expect(r.text).toBe(reference.text);
      expect(r.worker).toBe(worker.url);
    }
    expect(bad.others).toBe(2);
    expect(await scrapeSum(url, 'autoglm:gateway_retries_total{reason="http_500"}')).toBe(2);
    expect(await scrapeSum(url, `autoglm:gateway_worker_requests_total{worker="${bad.url}",outcome="http_500"}`)).toBe(2);
    expect(await scrapeSum(url, `autoglm:gateway_worker_requests_total{worker="${worker.url}",outcome="ok"}`)).toBe(2);
    // Two failures in a row are under the passive threshold (3): still in rotation. Its 500s
    // count against it because another worker then served those requests: a third ejects it.
    expect(g.health.state(bad.url)).toBe('healthy');
    expect((await call(url, '/v1/completions', body)).status).toBe(200);
    expect(g.health.state(bad.url)).toBe('unhealthy');
  });

  test('a request two workers answer 500 is failing itself: not tried on a third, and no worker is counted as failing', async () => {
    const [a, b] = [await stub('status-500'), await stub('status-500')];
    const { g, url } = await gatewayOver([a.url, b.url, worker.url]);
    // Three in a row: were each 500 a strike, the passive threshold (3) would eject a.
    for (let i = 0; i < 3; i++) {
      const r = await call(url, '/v1/completions', i === 1 ? { ...body, stream: true } : body);
      expect(r.status).toBe(502);
      expect(r.error).toMatchObject({ code: 'upstream_error', type: 'server_error' });
      expect((r.error as { message: string }).message).toMatch(/both answered HTTP 500 \(stub failure\): the request itself fails/);
    }
    expect([a.others, b.others]).toEqual([3, 3]);
    expect(await scrapeSum(url, `autoglm:gateway_worker_requests_total{worker="${worker.url}"}`)).toBe(0);
    expect(await scrapeSum(url, 'autoglm:gateway_retries_refused_total{why="request"}')).toBe(3);
    for (const w of [a, b, worker]) expect(g.health.state(w.url)).toBe('healthy');
  });

  test('a spent retry budget: the client gets a clear 502 at once instead of endless retries', async () => {
    const [a, b] = [await stub('status-503'), await stub('status-503')];
    // Never ejected (threshold 1000), attempts plentiful (100): only the budget can stop the retries.
    const { url } = await gatewayOver([a.url, b.url], {
      health: { passiveFailureThreshold: 1000 },
      retry: { maxAttempts: 100, budgetRatio: 0, budgetMinPerSecond: 0, budgetCap: 5 },
    });
    const start = performance.now();
    const first = await call(url, '/v1/completions', body);
    expect(first.status).toBe(502);
    expect(first.error).toMatchObject({ code: 'upstream_error', type: 'server_error' });
    expect((first.error as { message: string }).message).toMatch(/retry budget is spent/);
    expect(a.others + b.others).toBe(1 + 5);
    // The budget stays spent: the next request gets one attempt and the same answer.
    const second = await call(url, '/v1/completions', { ...body, stream: true });
    expect(second.status).toBe(502);
    expect((second.error as { message: string }).message).toMatch(/retry budget is spent/);
    expect(a.others + b.others).toBe(1 + 5 + 1);
    expect(performance.now() - start).toBeLessThan(3000);
    expect(await scrapeSum(url, 'autoglm:gateway_retries_total')).toBe(5);
    expect(await scrapeSum(url, 'autoglm:gateway_retries_refused_total{why="budget"}')).toBe(2);

    // With the default budget, the attempts per request (3) are what ends it.
    const { url: url3 } = await gatewayOver([a.url, b.url], { health: { passiveFailureThreshold: 1000 } });
    const before = a.others + b.others;
    const third = await call(url3, '/v1/completions', body);
    expect(third.status).toBe(502);
    expect((third.error as { message: string }).message).toMatch(/gave up after 3 attempts/);
    expect(a.others + b.others - before).toBe(3);
    expect(await scrapeSum(url3, 'autoglm:gateway_retries_refused_total{why="attempts"}')).toBe(1);
  });

  test('the request deadline: a worker that never answers gives 504 request_timeout near the deadline, not a hang', async () => {
    const hole = await stub('hang');
    const { g, url } = await gatewayOver([hole.url], { requestTimeoutMs: 1000 });
    const timed = async (b: Record<string, unknown>): Promise<Outcome & { ms: number }> => {
      const start = performance.now();
      const r = await call(url, '/v1/completions', b);
      return { ...r, ms: performance.now() - start };
    };
    const results = await Promise.all([timed(body), timed({ ...body, stream: true }), timed({ ...body, max_tokens: 3 })]);
    for (const r of results) {
      expect(r.status).toBe(504);
      expect(r.error).toMatchObject({ code: 'request_timeout', type: 'server_error', param: null });
      expect(r.ms).toBeGreaterThanOrEqual(950);
      expect(r.ms).toBeLessThan(4000);
    }
    // One attempt each: nothing is retried after the deadline.
    expect(hole.others).toBe(3);
    expect(await scrapeSum(url, 'autoglm:gateway_retries_refused_total{why="deadline"}')).toBe(3);
    // A passed deadline is the client's budget, not the worker's fault: three of them (the
    // passive threshold) do not eject it.
    expect(g.health.state(hole.url)).toBe('healthy');
    expect(await scrapeSum(url, 'autoglm:gateway_ejections_total')).toBe(0);
  });

  test('the request deadline mid-stream: the stream ends with an in-band request_timeout error', async () => {
    // A scripted worker (the real server around a paced engine, 50 ms a token): the stream
    // must outlast the deadline whatever the hardware.
    const slow = spawnWorker({ kind: 'scripted', port: await freePort(), clusterSecret: SECRET, tokenDelayMs: 50 });
    try {
      await waitReady(slow);
      const { g, url } = await gatewayOver([slow.url], { requestTimeoutMs: 1000 });
      const start = performance.now();
      const r = await call(url, '/v1/completions', { ...body, max_tokens: 200, stream: true });
      const ms = performance.now() - start;
      expect(r.status).toBe(200);
      expect(r.text.length).toBeGreaterThan(0);
      expect(r.text.length).toBeLessThan(200);
      expect(r.error).toMatchObject({ code: 'request_timeout', type: 'server_error' });
      expect(ms).toBeLessThan(4000);
      expect(await scrapeSum(url, 'autoglm:gateway_failovers_total')).toBe(0);
      expect(g.health.state(slow.url)).toBe('healthy');
    } finally {
      await stopAll([slow]);
    }
  });
});

describe('passive outlier detection', () => {
  test('a worker whose requests fail (connection reset) while /ready stays 200 is ejected by traffic, then one probe after the cool-down closes the circuit', async () => {
    const flaky = await stub('reset');
    const { g, url } = await gatewayOver([flaky.url, worker.url], {
      health: { probeIntervalMs: 100, passiveFailureThreshold: 3, baseEjectionMs: 1500 },
    });
    const ejections: { atMs: number; cooldownMs: number }[] = [];
    g.health.onEjection((id, cooldownMs) => {
      if (id === flaky.url) ejections.push({ atMs: performance.now(), cooldownMs });
    });
    let healedAtMs = 0;
    g.health.onStateChange((id, state) => {
      if (id === flaky.url && state === 'healthy') healedAtMs = performance.now();
    });

    // Three requests, each tried on the flaky worker first and answered by the real one.
    for (let i = 0; i < 3; i++) {
      const r = await call(url, '/v1/completions', body);
      expect([r.status, r.error, r.text]).toEqual([200, null, reference.text]);
      expect(ejections.length).toBe(i === 2 ? 1 : 0);
    }
    // The gateway made 3 attempts there. The stub may have seen up to 6: the connection pool
    // sends a request once more when a reused keep-alive socket resets (it may just be stale).
    expect(flaky.others).toBeGreaterThanOrEqual(3);
    expect(flaky.others).toBeLessThanOrEqual(6);
    const seen = flaky.others;
    const [view] = (await workersView(url)).filter((w) => w.id === flaky.url);
    expect(view).toMatchObject({ state: 'unhealthy', ejections: 1, lastProbe: 'HTTP 200' });
    expect(view!.ejectedForMs).toBeGreaterThan(0);
    expect(await scrapeSum(url, `autoglm:gateway_ejections_total{worker="${flaky.url}"}`)).toBe(1);
    expect(await scrapeSum(url, `autoglm:gateway_worker_state{worker="${flaky.url}",state="unhealthy"}`)).toBe(1);
    expect(await scrapeSum(url, `autoglm:gateway_worker_requests_total{worker="${flaky.url}",outcome="reset"}`)).toBe(3);
    expect(await scrapeSum(url, 'autoglm:gateway_retries_total{reason="reset"}')).toBe(3);

    // During the cool-down: no traffic and no probes go to it.
    const r = await call(url, '/v1/completions', body);
    expect([r.status, r.worker]).toEqual([200, worker.url]);
    expect(flaky.others).toBe(seen);

    await waitFor(() => healedAtMs > 0, 5000, 'the circuit closed again');
    const probeTimes = flaky.probeTimes;
    const { atMs, cooldownMs } = ejections[0]!;
    expect(cooldownMs).toBe(1500);
    expect(healedAtMs - atMs).toBeGreaterThanOrEqual(cooldownMs);
    // At most one probe that was already on its way when it was ejected (its answer is
    // ignored); the rest of the 1.5 s is silent (at 100 ms that would be ~15), and the
    // first probe after the cool-down closes the circuit.
    const during = probeTimes.filter((t) => t > atMs && t < healedAtMs);
    expect(during.length).toBeLessThanOrEqual(2);
    expect(probeTimes.filter((t) => t >= atMs + cooldownMs - 10 && t <= healedAtMs).length).toBe(1);
    expect((await workersView(url)).find((w) => w.id === flaky.url)).toMatchObject({ state: 'healthy', ejectedForMs: 0 });

    // Still failing: three more in a row eject it again, for twice as long.
    for (let i = 0; i < 3; i++) expect((await call(url, '/v1/completions', body)).status).toBe(200);
    expect(ejections.map((e) => e.cooldownMs)).toEqual([1500, 3000]);
    const again = (await workersView(url)).find((w) => w.id === flaky.url)!;
    expect(again).toMatchObject({ state: 'unhealthy', ejections: 2 });
    expect(again.ejectedForMs).toBeGreaterThan(1500);
    expect(await scrapeSum(url, `autoglm:gateway_ejections_total{worker="${flaky.url}"}`)).toBe(2);
  });
});

describe('gateway metrics move with traffic', () => {
  test('queue depth and in-flight count requests waiting for their first token, and drop when they end', async () => {
    const hole = await stub('hang');
    const { url } = await gatewayOver([hole.url], { requestTimeoutMs: 60_000 });
    expect(await scrapeSum(url, 'autoglm:gateway_queue_depth')).toBe(0);
    const clients = Array.from({ length: 3 }, () => new AbortController());
    const pending = clients.map((c, i) =>
      fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, ...(i === 0 ? { stream: true } : {}) }),
        signal: c.signal,
      }).catch(() => null),
    );
    await waitFor(() => hole.others === 3, 5000, 'three requests at the worker');
    expect(await scrapeSum(url, 'autoglm:gateway_queue_depth')).toBe(3);
    expect(await scrapeSum(url, 'autoglm:gateway_requests_in_flight')).toBe(3);
    for (const c of clients) c.abort();
    await Promise.all(pending);
    await waitFor(async () => (await scrapeSum(url, 'autoglm:gateway_requests_in_flight')) === 0, 5000, 'in-flight back to 0');
    expect(await scrapeSum(url, 'autoglm:gateway_queue_depth')).toBe(0);
  });

  test("queue depth is labelled by the base model of the workers serving the request's model; made-up names share 'unknown'", async () => {
    const alpha = await stub('hang');
    alpha.model = 'alpha';
    const beta = await stub('hang');
    beta.model = 'beta';
    const { url } = await gatewayOver([alpha.url, beta.url], { requestTimeoutMs: 60_000 });
    const models = ['alpha', 'alpha', 'beta', 'gamma', 'gamma', 'gamma'];
    const clients = models.map(() => new AbortController());
    const pending = models.map((model, i) =>
      fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, model, stream: i % 2 === 0 }),
        signal: clients[i]!.signal,
      }).catch(() => null),
    );
    await waitFor(() => alpha.others + beta.others === models.length, 5000, 'every request at a worker');
    const depth = (model: string) => scrapeSum(url, `autoglm:gateway_queue_depth{model="${model}"}`);
    expect([await depth('alpha'), await depth('beta'), await depth('unknown')]).toEqual([2, 1, 3]);
    // routed by model too: alpha's requests at alpha, beta's at beta
    expect(alpha.others).toBeGreaterThanOrEqual(2);
    expect(beta.others).toBeGreaterThanOrEqual(1);
    expect(await scrapeSum(url, 'autoglm:gateway_queue_depth{model="gamma"}')).toBe(0);
    for (const c of clients) c.abort();
    await Promise.all(pending);
    await waitFor(async () => (await scrapeSum(url, 'autoglm:gateway_requests_in_flight')) === 0, 5000, 'in-flight back to 0');
    expect(await scrapeSum(url, 'autoglm:gateway_queue_depth')).toBe(0);
  });

  test('time-to-first-token and duration histograms, the request counters and the per-worker counter count real requests', async () => {
    const { url } = await gatewayOver([worker.url]);
    const name = 'autoglm:gateway_';
    expect(await scrapeSum(url, `${name}time_to_first_token_seconds_count`)).toBe(0);
    const results = await Promise.all([
      call(url, '/v1/completions', { ...body, stream: true }),
      call(url, '/v1/completions', { ...body, stream: true }),
      call(url, '/v1/completions', body),
      call(url, '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, stream: true }),
    ]);
    for (const r of results) expect([r.status, r.error]).toEqual([200, null]);
    // TTFT: the three streams; duration: all four, by route.
    expect(await scrapeSum(url, `${name}time_to_first_token_seconds_count`)).toBe(3);
    expect(await scrapeSum(url, `${name}time_to_first_token_seconds_bucket{le="+Inf"}`)).toBe(3);
    expect(await scrapeSum(url, `${name}request_duration_seconds_count{route="/v1/completions"}`)).toBe(3);
    expect(await scrapeSum(url, `${name}request_duration_seconds_count{route="/v1/chat/completions"}`)).toBe(1);
    const ttftSum = await scrapeSum(url, `${name}time_to_first_token_seconds_sum`);
    const durationSum = await scrapeSum(url, `${name}request_duration_seconds_sum`);
    expect(ttftSum).toBeGreaterThan(0);
    expect(durationSum).toBeGreaterThan(ttftSum);
    expect(await scrapeSum(url, `${name}requests_total{route="/v1/completions",status="200"}`)).toBe(3);
    expect(await scrapeSum(url, `${name}requests_total{route="/v1/chat/completions",status="200"}`)).toBe(1);
    expect(await scrapeSum(url, `${name}worker_requests_total{worker="${worker.url}",outcome="ok"}`)).toBe(4);
    // A client error is counted with its status too.
    expect((await call(url, '/v1/completions', { ...body, model: 'nope' })).status).toBe(404);
    expect(await scrapeSum(url, `${name}requests_total{route="/v1/completions",status="404"}`)).toBe(1);
  });
});
