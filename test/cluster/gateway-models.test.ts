/**
 * A cluster whose workers serve different models, with real worker processes on loopback
 * (the demo model under different --served-model-name lists): the gateway sends each request
 * to a worker that serves the model it names (an alias included), lists every worker's
 * models at GET /v1/models, and answers 503 no_healthy_worker for a model whose only worker
 * is down (or gone from the registry) while the other model is still served. A worker that fails or hangs on its list is
 * left out of the gateway's.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { HeartbeatRegistry } from '../../src/cluster/registry/heartbeat-registry.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import { call } from './support/client.js';
import { CLUSTER_SECRET, GATEWAY_KEY } from './support/cluster.js';
import { freePort, spawnWorker, stopAll, waitFor, waitReady, type WorkerProcess } from './support/processes.js';
import { ReadyStub } from './support/ready-stub.js';

const auth = { authorization: `Bearer ${GATEWAY_KEY}` };
let gateway: Gateway;
let url: string;
let alpha: WorkerProcess; // serves 'alpha', also under the alias 'tales'
let beta: WorkerProcess; // serves 'beta'

beforeAll(async () => {
  gateway = await buildGateway({
    registry: new HeartbeatRegistry({ sweepIntervalMs: 50 }),
    auth: { apiKeys: [GATEWAY_KEY] },
    clusterSecret: CLUSTER_SECRET,
    health: { probeIntervalMs: 100 },
  });
  url = await gateway.listen({ port: 0, host: '127.0.0.1' });
  const common = { register: url, clusterSecret: CLUSTER_SECRET, heartbeatMs: 300 };
  // one at a time: the second reads the first's shader cache instead of compiling beside it
  alpha = spawnWorker({ ...common, port: await freePort(), servedModelName: 'alpha,tales' });
  await waitReady(alpha);
  beta = spawnWorker({ ...common, port: await freePort(), servedModelName: 'beta' });
  await waitReady(beta);
  await waitFor(() => gateway.health.healthy().length === 2, 10_000, 'both workers healthy in the gateway');
}, 300_000);
afterAll(async () => {
  await stopAll([alpha, beta].filter((w) => w !== undefined));
  await gateway?.close();
});

/** The gateway's id for the worker at `worker.url`. */
const idOf = (worker: WorkerProcess): string => gateway.health.snapshot().find((w) => w.url === worker.url)!.id;

async function modelIds(base: string): Promise<{ status: number; ids: string[]; body: Record<string, unknown> }> {
  const r = await fetch(`${base}/v1/models`, { headers: auth });
  const body = (await r.json()) as Record<string, unknown>;
  const data = (body.data ?? []) as { id: string }[];
  return { status: r.status, ids: data.map((m) => m.id).sort(), body };
}

const completion = (model: string, stream: boolean) => ({
  model,
  prompt: 'Once upon a time',
  max_tokens: 4,
  ignore_eos: true,
  temperature: 0,
  stream,
  ...(stream ? { stream_options: { include_usage: true } } : {}),
});

describe('a gateway in front of workers serving different models', () => {
  test("GET /v1/models lists every worker's models, aliases included, once each", async () => {
    const listed = await modelIds(url);
    expect(listed.status).toBe(200);
    expect(listed.body.object).toBe('list');
    expect(listed.ids).toEqual(['alpha', 'beta', 'tales']);
    // the entries are the workers' own (their context length and owner)
    for (const m of listed.body.data as { object: string; max_model_len: number }[]) {
      expect(m.object).toBe('model');
      expect(m.max_model_len).toBeGreaterThan(0);
    }
  });

  test('each request goes to a worker that serves the model it names', async () => {
    const cases: Array<[string, WorkerProcess]> = [
      ['alpha', alpha],
      ['tales', alpha],
      ['beta', beta],
    ];
    for (let round = 0; round < 4; round++) {
      for (const [model, worker] of cases) {
        const outcome = await call(url, '/v1/completions', completion(model, round % 2 === 1), auth);
        expect(outcome.status, `${model}: ${JSON.stringify(outcome.error)}`).toBe(200);
        expect(outcome.worker, model).toBe(idOf(worker));
        expect(outcome.usage?.completion_tokens).toBe(4);
      }
    }
    // the routes forwarded whole route by model too
    const tokenized = await fetch(`${url}/tokenize`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'beta', prompt: 'Once upon a time' }),
    });
    expect(tokenized.status).toBe(200);
    expect(tokenized.headers.get('x-autoglm-worker')).toBe(idOf(beta));
    // a name no worker serves: a worker's own 404, naming what it serves
    const unknown = await call(url, '/v1/completions', completion('gamma', false), auth);
    expect(unknown.status).toBe(404);
    expect((unknown.error as { code: string }).code).toBe('model_not_found');
  });

  test('a worker that fails or hangs on its list is left out; none answering is a 502', async () => {
    const hanging = await new ReadyStub().start();
    hanging.traffic = 'hang';
    const failing = await new ReadyStub().start();
    failing.traffic = 'status-500';
    const side = await buildGateway({
      registry: new StaticRegistry([alpha.url, hanging.url, failing.url]),
      auth: { apiKeys: [GATEWAY_KEY] },
      clusterSecret: CLUSTER_SECRET,
      health: { probeIntervalMs: 100 },
      firstByteTimeoutMs: 600,
    });
    const only = await buildGateway({
      registry: new StaticRegistry([failing.url]),
      auth: { apiKeys: [GATEWAY_KEY] },
      health: { probeIntervalMs: 100 },
    });
    try {
      const sideUrl = await side.listen({ port: 0, host: '127.0.0.1' });
      const onlyUrl = await only.listen({ port: 0, host: '127.0.0.1' });
      await waitFor(() => side.health.healthy().length === 3 && only.health.healthy().length === 1, 5000, 'stubs healthy');
      const started = performance.now();
      const listed = await modelIds(sideUrl);
      expect(listed.status).toBe(200);
      expect(listed.ids).toEqual(['alpha', 'tales']);
      // waited out the hanging worker's timeout, not the request's
      expect(performance.now() - started).toBeGreaterThanOrEqual(550);
      expect(hanging.others).toBe(1);
      expect(failing.others).toBe(1);
      const none = await fetch(`${onlyUrl}/v1/models`, { headers: auth });
      expect(none.status).toBe(502);
      const error = ((await none.json()) as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('upstream_error');
      expect(error.message).toContain('HTTP 500');
    } finally {
      await side.close();
      await only.close();
      await hanging.stop();
      await failing.stop();
    }
  });

  test('with the only worker serving a model down: 503 for that model, the other still served and listed alone', async () => {
    beta.kill('SIGKILL');
    await beta.exited;
    await waitFor(() => gateway.health.healthy().length === 1, 5000, 'beta out of rotation');
    const down = await call(url, '/v1/completions', completion('beta', false), auth);
    expect(down.status).toBe(503);
    expect((down.error as { code: string; message: string }).code).toBe('no_healthy_worker');
    expect((down.error as { message: string }).message).toContain("'beta'");
    const up = await call(url, '/v1/completions', completion('alpha', true), auth);
    expect(up.status).toBe(200);
    expect((await modelIds(url)).ids).toEqual(['alpha', 'tales']);
    // its heartbeats' TTL (0.9 s) runs out and the registry forgets it: still "retry later"
    // (a restarting worker is often slower than its TTL), not the other worker's 404
    const betaUrl = beta.url;
    await waitFor(() => !gateway.health.snapshot().some((w) => w.url === betaUrl), 5000, 'beta gone from the registry');
    const gone = await call(url, '/v1/completions', completion('beta', false), auth);
    expect(gone.status).toBe(503);
    expect((gone.error as { code: string }).code).toBe('no_healthy_worker');
  });
});
