import { afterAll, beforeAll, expect, test } from 'vitest';
import { call, type Outcome } from './support/client.js';
import { startCluster, type TestCluster } from './support/cluster.js';
import { waitFor, waitReady } from './support/processes.js';

// A worker killed (SIGKILL) and restarted on the same port again and again while streams
// run through the gateway: no request is lost or cut, every answer is whole, and after the
// last restart the worker is back in rotation (the circuit re-closes).
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({
    workers: 2,
    worker: { kind: 'scripted', tokenDelayMs: 15 },
    gateway: { health: { probeIntervalMs: 50, baseEjectionMs: 200, maxEjectionMs: 1000 } },
  });
});

afterAll(async () => cluster?.close());

test('a worker flapping under load: every stream completes whole, and the worker comes back each time', async () => {
  const body = { model: 'demo-stories', prompt: 'The dog', max_tokens: 20, temperature: 0, stream: true };
  const reference = await call(cluster.url, '/v1/completions', body, { authorization: 'Bearer sk-gateway-test' });
  expect(reference.error).toBeNull();
  let stop = false;
  const outcomes: Outcome[] = [];
  const load = Array.from({ length: 4 }, async () => {
    while (!stop) outcomes.push(await call(cluster.url, '/v1/completions', body, { authorization: 'Bearer sk-gateway-test' }));
  });
  const victim = cluster.workers[0]!.url;
  for (let i = 0; i < 4; i++) {
    await waitFor(() => cluster.gateway.balancer.outstanding(victim).requests > 0, 5000, 'streams on the victim');
    cluster.workers[0]!.kill('SIGKILL');
    await cluster.workers[0]!.exited;
    await new Promise((r) => setTimeout(r, 150));
    await waitReady(cluster.restart(0), 10_000);
    await waitFor(() => cluster.gateway.health.state(victim) === 'healthy', 5000, `the victim healthy again (cycle ${i})`);
  }
  stop = true;
  await Promise.all(load);
  const bad = outcomes.filter((o) => o.status !== 200 || o.error !== null || o.text !== reference.text);
  expect(bad.map((o) => [o.status, o.error, o.text])).toEqual([]);
  expect(outcomes.length).toBeGreaterThan(8);
  expect(cluster.healthyUrls().sort()).toEqual(cluster.workers.map((w) => w.url).sort());
});
