import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { KubernetesRegistry } from '../../src/cluster/registry/kubernetes-registry.js';
import { call } from './support/client.js';
import { CLUSTER_SECRET, GATEWAY_KEY } from './support/cluster.js';
import { endpointSlice, FakeKubeApi, type FakeEndpoint } from './support/fake-kube-api.js';
import { freePort, MODEL, spawnWorker, stopAll, waitFor, waitReady, type WorkerProcess } from './support/processes.js';

// A gateway on the kubernetes registry in front of two worker processes, the workers' pods
// described by EndpointSlices on a loopback API server: a pod that becomes ready gets
// traffic; a pod that starts terminating gets nothing new while its streams finish there.
const NS = 'autoglm';
const SVC = 'autoglm-workers';
const auth = { authorization: `Bearer ${GATEWAY_KEY}` };
// Long enough to still be running when the pod starts terminating.
const STREAM_TOKENS = 40;
let api: FakeKubeApi;
let gateway: Gateway;
let url: string;
let dir: string;
const workers: WorkerProcess[] = [];

/** Worker i's pod: its own slice, since a slice's port is every endpoint's port. */
const podSlice = (i: number, state: Omit<FakeEndpoint, 'ip' | 'pod'>) =>
  endpointSlice(`${SVC}-${i}`, SVC, [{ ip: '127.0.0.1', pod: `worker-${i}`, ...state }], [{ name: 'http', port: workers[i]!.port }]);
const healthyUrls = (): string[] =>
  gateway.health
    .healthy()
    .map((w) => w.url)
    .sort();

beforeAll(async () => {
  api = await FakeKubeApi.start({ namespace: NS, tokens: ['sa-token'] });
  const ports = [await freePort(), await freePort()];
  const spawnAt = (port: number): WorkerProcess => spawnWorker({ port, clusterSecret: CLUSTER_SECRET, tokenDelayMs: 60 });
  // One at a time: a cold shader cache makes two real workers compiling at once slow (support/cluster.ts).
  workers.push(spawnAt(ports[0]!));
  await waitReady(workers[0]!);
  workers.push(spawnAt(ports[1]!));
  await waitReady(workers[1]!);
  dir = mkdtempSync(join(tmpdir(), 'autoglm-k8s-gw-'));
  writeFileSync(join(dir, 'token'), 'sa-token');
  api.apply(podSlice(0, {}));
  // worker-1's pod still fails its readiness probe
  api.apply(podSlice(1, { ready: false }));
  gateway = await buildGateway({
    registry: new KubernetesRegistry({
      service: SVC,
      namespace: NS,
      apiUrl: api.url,
      tokenFile: join(dir, 'token'),
      env: {},
      serviceAccountDir: join(dir, 'none'),
      retryMs: 20,
      maxRetryMs: 500,
    }),
    auth: { apiKeys: [GATEWAY_KEY] },
    clusterSecret: CLUSTER_SECRET,
    health: { probeIntervalMs: 100 },
  });
  url = await gateway.listen({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await stopAll(workers);
  await gateway?.close();
  await api?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a pod that becomes ready joins; a terminating pod gets nothing new and its streams finish there', async () => {
  await waitFor(() => healthyUrls().length === 1, 10_000, 'worker-0 healthy');
  expect(healthyUrls()).toEqual([workers[0]!.url]);
  api.apply(podSlice(1, {}));
  await waitFor(() => healthyUrls().length === 2, 10_000, 'worker-1 healthy once its pod is ready');

  const body = {
    model: MODEL,
    prompt: 'Once upon a time',
    max_tokens: STREAM_TOKENS,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  };
  let started = 0;
  const streams = Array.from({ length: 4 }, () =>
    call(url, '/v1/completions', body, auth, (text) => {
      if (text.length === 1) started++;
    }),
  );
  await waitFor(() => started === 4, 60_000, 'all streams under way');
  const outstanding = (i: number): number => gateway.balancer.outstanding(`worker-${i}`).requests;
  const victim = outstanding(0) >= outstanding(1) ? 0 : 1;
  const inFlightThere = outstanding(victim);
  expect(inFlightThere).toBeGreaterThan(0);

  // The pod is deleted: terminating at once; its readiness probe has not failed yet.
  api.apply(podSlice(victim, { ready: false, terminating: true }));
  await waitFor(() => !gateway.health.snapshot().some((w) => w.id === `worker-${victim}`), 3000, 'the terminating pod out of the view');
  const during = await Promise.all(
    Array.from({ length: 3 }, (_, i) =>
      call(
        url,
        '/v1/completions',
        { model: MODEL, prompt: 'The cat', max_tokens: 4, temperature: 0, ...(i === 0 ? { stream: true } : {}) },
        auth,
      ),
    ),
  );
  // (the gateway names the worker that answered by its registry id: the pod)
  for (const r of during) expect([r.status, r.error, r.worker]).toEqual([200, null, `worker-${1 - victim}`]);
  const done = await Promise.all(streams);
  expect(done.filter((r) => r.worker === `worker-${victim}`)).toHaveLength(inFlightThere);
  for (const r of done) {
    expect(r.error).toBeNull();
    expect(r.usage?.completion_tokens).toBe(STREAM_TOKENS);
    expect(r.text).toBe(done[0]!.text);
  }
  const metrics = await (await fetch(`${url}/metrics`)).text();
  expect(metrics).not.toMatch(/autoglm:gateway_failovers_total\{outcome="resumed"\} [1-9]/);
});

test('/cluster/workers says when the registry is failing, and stops saying so once it recovers', async () => {
  const view = async (): Promise<{ registry: string; registry_error: string | null; workers: unknown[] }> =>
    (await fetch(`${url}/cluster/workers`, { headers: auth })).json() as never;
  expect((await view()).registry_error).toBeNull();
  // the service account loses its access (a rotated token the API no longer takes, a role removed)
  api.tokens = new Set(['another-token']);
  api.cutWatches();
  await waitFor(async () => /401|Unauthorized/.test((await view()).registry_error ?? ''), 10_000, 'the error shown');
  const failing = await view();
  expect(failing.registry).toBe('kubernetes');
  // the last view that worked stays in place meanwhile
  expect(failing.workers.length).toBeGreaterThan(0);
  api.tokens = new Set(['sa-token']);
  await waitFor(async () => (await view()).registry_error === null, 15_000, 'the error cleared');
});
