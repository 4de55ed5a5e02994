/**
 * Run-time LoRA adapters behind the gateway, with real worker processes (the demo model, two
 * adapter slots, --allow-runtime-lora-updates) on loopback: a load or unload at the gateway
 * reaches every worker; a restarted worker is given the adapters back; a worker that cannot
 * load one gets no requests on it; an adapter loaded or unloaded at one worker spreads to the
 * others; and a gateway started later takes up what the workers run.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildGateway } from '../../src/cluster/gateway/build-gateway.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import { loadModelSpec } from '../../src/engine/model/config.js';
import { generateLoraAdapter } from '../../src/testing/generate-lora.js';
import { call } from './support/client.js';
import { CLUSTER_SECRET, GATEWAY_KEY, startCluster, type TestCluster } from './support/cluster.js';
import { DEMO_MODEL_DIR, spawnWorker, waitFor, waitReady } from './support/processes.js';

const ADAPTER = join(tmpdir(), `autoglm-gateway-lora-${process.pid}`);
const LORA_FLAGS = ['--max-loras', '2', '--allow-runtime-lora-updates'];
const auth = { authorization: `Bearer ${GATEWAY_KEY}` };
const secret = { 'x-autoglm-cluster-secret': CLUSTER_SECRET };
let cluster: TestCluster;

beforeAll(async () => {
  // the seed and scale lora-api.test.ts shows change the demo model's greedy story
  await generateLoraAdapter(ADAPTER, await loadModelSpec(DEMO_MODEL_DIR), { rank: 8, seed: 3, bScale: 0.15 });
  cluster = await startCluster({
    workers: 2,
    worker: { kind: 'real', extraArgs: LORA_FLAGS },
    gateway: { runtimeLoraUpdates: { retryBaseMs: 200, retryMaxMs: 1000 }, health: { probeIntervalMs: 100 } },
  });
}, 300_000);
afterAll(async () => {
  await cluster?.close();
  rmSync(ADAPTER, { recursive: true, force: true });
});

async function post(url: string, path: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const r = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: r.status, text: await r.text() };
}

/** The adapters a worker serves, from its own /v1/models. */
async function adaptersOf(workerUrl: string): Promise<string[]> {
  const r = await fetch(`${workerUrl}/v1/models`, { headers: secret });
  const body = (await r.json()) as { data: { id: string; parent?: string }[] };
  return body.data.filter((m) => m.parent !== undefined).map((m) => m.id);
}

const everyWorker = async (check: (adapters: string[]) => boolean): Promise<boolean> =>
  (await Promise.all(cluster.workers.map((w) => adaptersOf(w.url)))).every(check);

const completion = (model: string) => ({ model, prompt: 'Once upon a time, there was a little fox named', max_tokens: 48, temperature: 0 });

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${cluster.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('run-time LoRA adapters through the gateway', () => {
  test('a load reaches every worker and both serve it the same; an unload reaches every worker', async () => {
    const loaded = await post(cluster.url, '/v1/load_lora_adapter', { lora_name: 'fox', lora_path: ADAPTER }, auth);
    expect(loaded).toEqual({ status: 200, text: "Success: LoRA adapter 'fox' added successfully." });
    // at once: the gateway's probes have not seen the load yet, its own calls have
    const viaGateway = await call(cluster.url, '/v1/completions', completion('fox'), auth);
    for (const w of cluster.workers) expect(await adaptersOf(w.url)).toEqual(['fox']);
    // the same greedy answer from each worker, and through the gateway; not the base model's
    const direct = await Promise.all(cluster.workers.map((w) => call(w.url, '/v1/completions', completion('fox'), secret)));
    const base = await call(cluster.url, '/v1/completions', completion('demo-stories'), auth);
    expect(direct.map((d) => d.status)).toEqual([200, 200]);
    expect(direct[1]!.text).toBe(direct[0]!.text);
    expect(viaGateway.text).toBe(direct[0]!.text);
    expect(base.text).not.toBe(direct[0]!.text);

    const again = await post(cluster.url, '/v1/load_lora_adapter', { lora_name: 'fox', lora_path: ADAPTER }, auth);
    expect(again.status).toBe(400);
    expect(again.text).toContain('already loaded');

    const unloaded = await post(cluster.url, '/v1/unload_lora_adapter', { lora_name: 'fox' }, auth);
    expect(unloaded).toEqual({ status: 200, text: "Success: LoRA adapter 'fox' removed successfully." });
    for (const w of cluster.workers) expect(await adaptersOf(w.url)).toEqual([]);
    const gone = await call(cluster.url, '/v1/completions', completion('fox'), auth);
    expect([gone.status, (gone.error as { code?: string }).code]).toEqual([404, 'model_not_found']);
    const twice = await post(cluster.url, '/v1/unload_lora_adapter', { lora_name: 'fox' }, auth);
    expect(twice.status).toBe(404);
  });

  test('unload and load again at once, three times: every request on it is answered and every worker keeps it', async () => {
    for (let i = 0; i < 3; i++) {
      expect((await post(cluster.url, '/v1/load_lora_adapter', { lora_name: 'fox', lora_path: ADAPTER }, auth)).status).toBe(200);
      // over several probe periods (100 ms): no worker may lose it to the unload before
      for (let j = 0; j < 4; j++) {
        const r = await call(cluster.url, '/v1/completions', { ...completion('fox'), max_tokens: 2 }, auth);
        expect(r.status, JSON.stringify(r.error)).toBe(200);
        await new Promise((resolve) => setTimeout(resolve, 60));
      }
      expect(await everyWorker((a) => a.includes('fox'))).toBe(true);
      expect((await post(cluster.url, '/v1/unload_lora_adapter', { lora_name: 'fox' }, auth)).status).toBe(200);
    }
  });

  test("every worker's refusal (a folder that is no adapter) comes back as the worker's 400, and nothing is kept", async () => {
    const r = await post(cluster.url, '/v1/load_lora_adapter', { lora_name: 'bad', lora_path: join(ADAPTER, 'nowhere') }, auth);
    expect(r.status).toBe(400);
    expect((JSON.parse(r.text) as { error: { param: string } }).error.param).toBe('lora_path');
    const missing = await post(cluster.url, '/v1/load_lora_adapter', { lora_name: 'x' }, auth);
    expect([missing.status, (JSON.parse(missing.text) as { error: { param: string } }).error.param]).toEqual([400, 'lora_path']);
    expect((await post(cluster.url, '/v1/load_lora_adapter', { lora_name: 'x', lora_path: ADAPTER }, {})).status).toBe(401);
    const state = (await (await fetch(`${cluster.url}/cluster/workers`, { headers: auth })).json()) as { lora: { adapters: object } };
    expect(state.lora.adapters).toEqual({});
  });

  test('a restarted worker is given the adapter back; one that cannot load it gets no requests on it', async () => {
    expect((await post(cluster.url, '/v1/load_lora_adapter', { lora_name: 'fox', lora_path: ADAPTER }, auth)).status).toBe(200);
    const loadsBefore = await metric('autoglm:gateway_lora_calls_total{action="load",outcome="ok"}');
    const victim = 1;
    cluster.workers[victim]!.kill('SIGKILL');
    await cluster.workers[victim]!.exited;
    cluster.restart(victim);
    await waitReady(cluster.workers[victim]!);
    await waitFor(
      async () => (await adaptersOf(cluster.workers[victim]!.url)).includes('fox'),
      30_000,
      'the restarted worker to serve fox',
    );
    expect(await metric('autoglm:gateway_lora_calls_total{action="load",outcome="ok"}')).toBeGreaterThan(loadsBefore);

    // Now a worker without the run-time routes: the gateway cannot give it the adapter.
    const port = cluster.workers[victim]!.port;
    cluster.workers[victim]!.kill('SIGKILL');
    await cluster.workers[victim]!.exited;
    cluster.workers[victim] = spawnWorker({
      port,
      register: cluster.url,
      clusterSecret: CLUSTER_SECRET,
      kind: 'real',
      extraArgs: ['--max-loras', '2'],
    });
    try {
      await withoutRuntimeRoutes(victim);
    } finally {
      // back to a worker with the routes, for the tests after this one
      cluster.workers[victim]!.kill('SIGKILL');
      await cluster.workers[victim]!.exited;
      cluster.restart(victim);
      await waitReady(cluster.workers[victim]!);
    }
    await waitFor(() => everyWorker((a) => a.includes('fox')), 30_000, 'fox on every worker again');
    expect((await post(cluster.url, '/v1/unload_lora_adapter', { lora_name: 'fox' }, auth)).status).toBe(200);
  });

  /** With worker `victim` started without the run-time routes: the load refused, requests on fox all go to the other. */
  async function withoutRuntimeRoutes(victim: number): Promise<void> {
    await waitReady(cluster.workers[victim]!);
    await waitFor(() => cluster.healthyUrls().length === 2, 30_000, 'both workers healthy');
    const pending = async () => {
      const state = (await (await fetch(`${cluster.url}/cluster/workers`, { headers: auth })).json()) as {
        lora: { pending: Record<string, { call: string; error: string }[]> };
      };
      return Object.values(state.lora.pending).flat();
    };
    await waitFor(async () => (await pending()).some((p) => p.call === 'load:fox'), 10_000, 'the refused load to show');
    expect((await pending())[0]!.error).toContain('HTTP 404');
    const servers = new Set<string | null>();
    for (let i = 0; i < 8; i++) {
      const r = await call(cluster.url, '/v1/completions', { ...completion('fox'), max_tokens: 2 }, auth);
      expect(r.status).toBe(200);
      servers.add(r.worker);
    }
    expect([...servers]).toEqual([cluster.workers[0]!.url]);
    // the worker with the adapter stopped: "no healthy worker, retry" (503), not the other's 404
    const holder = cluster.workers[0]!;
    holder.proc.kill('SIGSTOP');
    try {
      await waitFor(() => !cluster.healthyUrls().includes(holder.url), 10_000, 'the stopped worker out of rotation');
      const stopped = await call(cluster.url, '/v1/completions', { ...completion('fox'), max_tokens: 2 }, auth);
      expect([stopped.status, (stopped.error as { code?: string }).code]).toEqual([503, 'no_healthy_worker']);
    } finally {
      holder.proc.kill('SIGCONT');
    }
    await waitFor(() => cluster.healthyUrls().length === 2, 30_000, 'the stopped worker back');
    // the base model still goes to both
    await waitFor(
      async () =>
        (await call(cluster.url, '/v1/completions', { ...completion('demo-stories'), max_tokens: 1 }, auth)).worker ===
        cluster.workers[victim]!.url,
      30_000,
      'a base-model request on the worker without adapters',
    );
  }

  test('an adapter loaded at one worker spreads to the others, and so does its unload', async () => {
    const [first, second] = cluster.workers;
    expect((await post(first!.url, '/v1/load_lora_adapter', { lora_name: 'owl', lora_path: ADAPTER }, secret)).status).toBe(200);
    await waitFor(async () => (await adaptersOf(second!.url)).includes('owl'), 10_000, 'owl on the other worker');
    expect((await post(first!.url, '/v1/unload_lora_adapter', { lora_name: 'owl' }, secret)).status).toBe(200);
    await waitFor(async () => !(await adaptersOf(second!.url)).includes('owl'), 10_000, 'owl unloaded from the other worker');
    // and it stays unloaded: neither worker gets it back
    await new Promise((r) => setTimeout(r, 500));
    expect(await everyWorker((a) => !a.includes('owl'))).toBe(true);
  });

  test('a gateway started later takes up the adapters the workers run; an unload through it reaches the first gateway too', async () => {
    expect((await post(cluster.url, '/v1/load_lora_adapter', { lora_name: 'fox', lora_path: ADAPTER }, auth)).status).toBe(200);
    const second = await buildGateway({
      registry: new StaticRegistry(cluster.workers.map((w) => w.url)),
      auth: { apiKeys: [GATEWAY_KEY] },
      clusterSecret: CLUSTER_SECRET,
      runtimeLoraUpdates: true,
      health: { probeIntervalMs: 100 },
    });
    const url = await second.listen({ port: 0, host: '127.0.0.1' });
    try {
      const adapters = async () =>
        ((await (await fetch(`${url}/cluster/workers`, { headers: auth })).json()) as { lora: { adapters: Record<string, string> } }).lora
          .adapters;
      await waitFor(async () => 'fox' in (await adapters()), 10_000, 'the second gateway to take up fox');
      expect(await adapters()).toEqual({ fox: ADAPTER });
      // an unload through the second one reaches every worker, and the first gateway stops giving it out
      expect((await post(url, '/v1/unload_lora_adapter', { lora_name: 'fox' }, auth)).status).toBe(200);
      expect(await everyWorker((a) => a.length === 0)).toBe(true);
      const first = async () =>
        (
          (await (await fetch(`${cluster.url}/cluster/workers`, { headers: auth })).json()) as {
            lora: { adapters: object; unloaded: string[] };
          }
        ).lora;
      await waitFor(async () => (await first()).unloaded.includes('fox'), 10_000, 'the first gateway to see the unload');
      await new Promise((r) => setTimeout(r, 500));
      expect(await everyWorker((a) => a.length === 0)).toBe(true);
    } finally {
      await second.close();
    }
  });
});
