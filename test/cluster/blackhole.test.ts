import { afterAll, beforeAll, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import { call } from './support/client.js';
import { scrapeSum } from './support/metrics.js';
import { freePort, MODEL, spawnWorker, stopAll, waitFor, waitReady, type WorkerProcess } from './support/processes.js';
import { ReadyStub } from './support/ready-stub.js';

// A blackholed worker: healthy at first, then it accepts connections and never answers.
// The gateway must eject it on timeouts and serve every request elsewhere, never hang.
const SECRET = 'bh-secret';
let worker: WorkerProcess;
let hole: ReadyStub;
let gateway: Gateway;
let url: string;

beforeAll(async () => {
  worker = spawnWorker({ port: await freePort(), clusterSecret: SECRET, tokenDelayMs: 20 });
  hole = await new ReadyStub().start();
  await waitReady(worker);
  gateway = await buildGateway({
    registry: new StaticRegistry([hole.url, worker.url]),
    auth: { apiKeys: [], disabled: true },
    clusterSecret: SECRET,
    health: { probeIntervalMs: 100, probeTimeoutMs: 300, unhealthyThreshold: 2 },
    firstByteTimeoutMs: 1500,
  });
  url = await gateway.listen({ port: 0, host: '127.0.0.1' });
  await waitFor(() => gateway.health.healthy().length === 2, 5000, 'both healthy');
});

afterAll(async () => {
  await gateway?.close();
  await hole?.stop();
  await stopAll([worker].filter(Boolean));
});

test('a blackholed worker is ejected by timeouts and no request waits on it', async () => {
  const reference = await call(
    worker.url,
    '/v1/completions',
    { model: MODEL, prompt: 'The dog', max_tokens: 6, temperature: 0 },
    {
      'x-autoglm-cluster-secret': SECRET,
    },
  );
  // It swallows requests first, while its /ready still answers, so that some requests are
  // surely in the hole (the balancer alternates between two equally loaded workers) when
  // it goes dark altogether.
  hole.traffic = 'hang';
  const t0 = performance.now();
  const requests = Promise.all(
    Array.from({ length: 6 }, async (_, i) => {
      const start = performance.now();
      const body = { model: MODEL, prompt: 'The dog', max_tokens: 6, temperature: 0, ...(i % 2 === 0 ? { stream: true } : {}) };
      const r = await call(url, '/v1/completions', body);
      return { ...r, ms: performance.now() - start };
    }),
  );
  await waitFor(() => hole.others > 0, 5000, 'requests in the hole');
  hole.mode = 'hang';
  const outMs = await waitFor(() => gateway.health.state(hole.url) === 'unhealthy', 3000, 'blackhole ejected');
  const results = await requests;
  expect(outMs).toBeLessThan(1500);
  const total = performance.now() - t0;
  for (const r of results) {
    expect([r.status, r.error]).toEqual([200, null]);
    expect(r.text).toBe(reference.text);
    expect(r.ms).toBeLessThan(8000);
  }
  const retries = await scrapeSum(url, 'autoglm:gateway_retries_total');
  // Every request that went into the hole was answered by the worker after one retry.
  expect(hole.others).toBeGreaterThan(0);
  expect(retries).toBe(hole.others);
  expect(gateway.health.snapshot().find((w) => w.url === hole.url)!.lastProbe).toBe('timeout');
  console.log(
    `blackhole: ${hole.others} requests sent into the hole, ${retries} retries, all 6 answered in ${Math.round(total)} ms (slowest ${Math.round(Math.max(...results.map((r) => r.ms)))} ms); out of rotation ${Math.round(outMs)} ms after it went dark`,
  );
});
