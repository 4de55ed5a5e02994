import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { EtcdClient } from '../../src/cluster/registry/etcd-client.js';
import { EtcdRegistry } from '../../src/cluster/registry/etcd-registry.js';
import {
  freePort,
  MODEL,
  spawnWorker,
  startEtcd,
  stopAll,
  waitFor,
  waitReady,
  type ServiceProcess,
  type WorkerProcess,
} from './support/processes.js';

// A real etcd on loopback ports; real workers (`autoglm serve --etcd` with the demo model)
// hold lease-backed keys; two gateways watch the prefix.
const SECRET = 'etcd-cluster-secret';
let etcd: ServiceProcess;
const gateways: Gateway[] = [];
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  await stopAll(workers);
  for (const g of gateways) await g.close();
  await etcd?.stop();
});

async function gateway(): Promise<Gateway> {
  const g = await buildGateway({
    registry: new EtcdRegistry({ url: etcd.url, prefix: '/autoglm/workers/' }),
    auth: { apiKeys: ['k'] },
    clusterSecret: SECRET,
    health: { probeIntervalMs: 100 },
  });
  await g.listen({ port: 0, host: '127.0.0.1' });
  gateways.push(g);
  return g;
}

const healthyUrls = (g: Gateway): string[] =>
  g.health
    .healthy()
    .map((w) => w.url)
    .sort();

describe('etcd registry', () => {
  test('the JSON gateway client: lease, put, range, watch, revoke', async () => {
    const c = new EtcdClient(etcd.url);
    const lease = await c.grantLease(5);
    await c.put('/t/a', '1', lease);
    await c.put('/t/b', '2', lease);
    await c.put('/u/c', '3');
    const { kvs, revision } = await c.rangePrefix('/t/');
    expect(kvs).toEqual([
      { key: '/t/a', value: '1' },
      { key: '/t/b', value: '2' },
    ]);
    const events: string[] = [];
    const abort = new AbortController();
    const watching = c
      .watchPrefix('/t/', revision + 1, (es) => events.push(...es.map((e) => `${e.type} ${e.key}`)), abort.signal)
      .catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));
    expect(await c.keepAlive(lease)).toBe(true);
    await c.revokeLease(lease);
    await waitFor(() => events.length === 2, 3000, 'delete events');
    expect(events.sort()).toEqual(['DELETE /t/a', 'DELETE /t/b']);
    expect(await c.keepAlive(lease)).toBe(false);
    abort.abort();
    await watching;
  });

  test('two gateways on one etcd see the same workers; SIGTERM and SIGKILL both remove a worker everywhere', async () => {
    const [g1, g2] = [await gateway(), await gateway()];
    // One at a time: a real worker compiles its kernels while it warms up, and on a cold
    // shader cache two at once on two cores take far longer than one after the other.
    for (let i = 0; i < 2; i++) {
      workers.push(spawnWorker({ port: await freePort(), etcd: etcd.url, clusterSecret: SECRET, heartbeatMs: 300 }));
      await waitReady(workers[i]!);
    }
    const all = workers.map((w) => w.url).sort();
    await waitFor(() => healthyUrls(g1).length === 2 && healthyUrls(g2).length === 2, 15_000, 'both workers in both gateways');
    expect(healthyUrls(g1)).toEqual(all);
    expect(healthyUrls(g2)).toEqual(all);

    // Requests flow through either gateway.
    for (const g of [g1, g2]) {
      const address = g.app.server.address() as { port: number };
      const r = await fetch(`http://127.0.0.1:${address.port}/v1/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, prompt: 'Once upon', max_tokens: 4, temperature: 0, ignore_eos: true }),
      });
      expect(r.status).toBe(200);
      expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(4);
    }

    // SIGTERM: the agent revokes its lease first, so both registries drop it at once.
    const [a, b] = workers as [WorkerProcess, WorkerProcess];
    a.kill('SIGTERM');
    const gone = (g: Gateway, url: string): boolean => !g.health.snapshot().some((w) => w.url === url);
    const drainedMs = await waitFor(() => gone(g1, a.url) && gone(g2, a.url), 5000, 'revoked worker gone');
    expect(await a.exited).toBe(0);
    expect(drainedMs).toBeLessThan(2000);

    // SIGKILL: nobody revokes; the lease (TTL 2 s) lapses and etcd deletes the key.
    b.kill('SIGKILL');
    const lapsedMs = await waitFor(() => gone(g1, b.url) && gone(g2, b.url), 8000, 'lapsed worker gone');
    expect(lapsedMs).toBeLessThan(5000);
    expect(healthyUrls(g1)).toEqual([]);
  });

  test('a value under the prefix that is not a worker entry is left out, and the gateway keeps running', async () => {
    const c = new EtcdClient(etcd.url);
    const prefix = '/autoglm-stray/workers/';
    // One before the gateway lists the prefix, the rest while it watches.
    await c.put(`${prefix}early`, JSON.stringify({ url: 'http://%zz:1' }));
    const registry = new EtcdRegistry({ url: etcd.url, prefix });
    const g = await buildGateway({ registry, auth: { apiKeys: ['k'] }, clusterSecret: SECRET, health: { probeIntervalMs: 100 } });
    const address = (await g.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
    gateways.push(g);
    expect(registry.list()).toEqual([]);
    expect(registry.lastSkipped).toMatch(/^\/autoglm-stray\/workers\/early: not a worker entry/);
    await c.put(`${prefix}late`, 'not json');
    await c.put(`${prefix}port`, JSON.stringify({ url: 'http://127.0.0.1:99999' }));
    await c.put(`${prefix}good`, JSON.stringify({ url: 'http://127.0.0.1:1/' }));
    await waitFor(() => registry.list().length === 1, 3000, 'the good entry listed');
    expect(registry.list()).toEqual([{ id: 'good', url: 'http://127.0.0.1:1' }]);
    expect((await fetch(`${address}/health`)).status).toBe(200);
  });
});
