import { afterAll, describe, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { HeartbeatRegistry } from '../../src/cluster/registry/heartbeat-registry.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import { startWorkerAgent } from '../../src/cluster/worker-agent.js';
import { waitFor } from './support/processes.js';
import { ReadyStub } from './support/ready-stub.js';

const SECRET = 'hb-secret';
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

async function heartbeatGateway(): Promise<{ g: Gateway; url: string; registry: HeartbeatRegistry }> {
  const registry = new HeartbeatRegistry({ sweepIntervalMs: 50 });
  const g = await buildGateway({ registry, auth: { apiKeys: ['k'] }, clusterSecret: SECRET, health: { probeIntervalMs: 100 } });
  const url = await g.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => g.close());
  return { g, url, registry };
}

async function stub(): Promise<ReadyStub> {
  const s = await new ReadyStub().start();
  closers.push(() => s.stop());
  return s;
}

describe('heartbeat registry (the default)', () => {
  test('a worker agent registers, heartbeats and deregisters on stop', async () => {
    const { g, url, registry } = await heartbeatGateway();
    const worker = await stub();
    const agent = await startWorkerAgent({ selfUrl: worker.url, registerUrl: url, clusterSecret: SECRET, heartbeatMs: 100 });
    // Registered by the time startWorkerAgent returns.
    expect(registry.list().map((w) => w.url)).toEqual([worker.url]);
    await waitFor(() => g.health.healthy().length === 1, 2000, 'healthy');
    // Heartbeats keep it past several TTLs (3 x 100 ms).
    await new Promise((r) => setTimeout(r, 800));
    expect(registry.list()).toHaveLength(1);
    await agent.stop();
    expect(registry.list()).toEqual([]);
    expect(g.health.snapshot()).toEqual([]);
  });

  test('a worker that stops heartbeating is dropped after its TTL', async () => {
    const { registry } = await heartbeatGateway();
    const worker = await stub();
    // One registration by hand with a 300 ms TTL and no heartbeats after it.
    registry.heartbeat({ url: worker.url, ttlMs: 300 });
    expect(registry.list()).toHaveLength(1);
    const ms = await waitFor(() => registry.list().length === 0, 2000, 'expiry');
    expect(ms).toBeLessThan(600);
  });

  test('registration needs the cluster secret and a valid URL', async () => {
    const { url, registry } = await heartbeatGateway();
    const post = (body: unknown, secret?: string) =>
      fetch(`${url}/cluster/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(secret ? { 'x-autoglm-cluster-secret': secret } : {}) },
        body: JSON.stringify(body),
      });
    const noSecret = await post({ url: 'http://127.0.0.1:1' });
    expect(noSecret.status).toBe(401);
    expect(((await noSecret.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    expect((await post({ url: 'http://127.0.0.1:1' }, 'wrong')).status).toBe(401);
    // The last four passed the earlier pattern check and then failed to parse where the
    // gateway built `${url}/ready`: thrown in a registry listener, they took the gateway down.
    for (const bad of [
      'not a url',
      'ftp://127.0.0.1:1',
      'http://u:p@127.0.0.1:1',
      'http://127.0.0.1:1/?q=1',
      'http://%zz:1',
      'http://a:99999',
      'http://[::1',
      'http://a b',
    ]) {
      const r = await post({ url: bad }, SECRET);
      expect(r.status, bad).toBe(400);
      expect(((await r.json()) as { error: { param: string } }).error.param).toBe('url');
    }
    expect(registry.list()).toEqual([]);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const ok = await post({ url: 'http://127.0.0.1:1/', ttlMs: 10_000_000 }, SECRET);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ id: 'http://127.0.0.1:1', ttlMs: 60_000 });
  });

  test('registrations past maxWorkers are refused with 429 until one leaves; known workers still renew', async () => {
    let now = 0;
    const registry = new HeartbeatRegistry({ maxWorkers: 3 }, () => now);
    const g = await buildGateway({ registry, auth: { apiKeys: ['k'] }, clusterSecret: SECRET, health: { probeIntervalMs: 100 } });
    const url = await g.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => g.close());
    const post = (path: string, body: unknown) =>
      fetch(`${url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-autoglm-cluster-secret': SECRET },
        body: JSON.stringify(body),
      });
    for (const port of [1, 2, 3])
      expect((await post('/cluster/register', { url: `http://127.0.0.1:${port}`, ttlMs: 1000 })).status).toBe(200);
    const refused = await post('/cluster/register', { url: 'http://127.0.0.1:4' });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/maximum of 3 workers \(--max-workers\)/);
    // a known worker's heartbeat is not a new registration
    expect((await post('/cluster/register', { url: 'http://127.0.0.1:2', ttlMs: 5000 })).status).toBe(200);
    // one leaving (deregistered, or expired) makes room
    expect((await post('/cluster/deregister', { url: 'http://127.0.0.1:1' })).status).toBe(200);
    expect((await post('/cluster/register', { url: 'http://127.0.0.1:4' })).status).toBe(200);
    now = 2000; // 3 (TTL 1 s) has expired, not yet swept
    expect((await post('/cluster/register', { url: 'http://127.0.0.1:5' })).status).toBe(200);
    expect(
      registry
        .list()
        .map((w) => w.url)
        .sort(),
    ).toEqual(['http://127.0.0.1:2', 'http://127.0.0.1:4', 'http://127.0.0.1:5']);
  });
});

describe('static registry', () => {
  test('a worker URL that is not an http(s) URL is refused up front, naming it', () => {
    for (const bad of ['notaurl', 'http://%zz:1', 'ftp://a:1']) {
      expect(() => new StaticRegistry(['http://127.0.0.1:1', bad])).toThrow(
        expect.objectContaining({ code: 'invalid_request', param: 'workers', message: expect.stringContaining(`'${bad}'`) }),
      );
    }
  });

  test('lists exactly the given URLs; the gateway probes them', async () => {
    const a = await stub();
    const b = await stub();
    b.mode = 'loading';
    const g = await buildGateway({
      registry: new StaticRegistry([`${a.url}/`, b.url]),
      auth: { apiKeys: [], disabled: true },
      health: { probeIntervalMs: 50 },
    });
    closers.push(() => g.close());
    await waitFor(() => g.health.healthy().length === 1, 2000, 'a healthy');
    expect(g.health.snapshot().map((w) => [w.url, w.state])).toEqual([
      [a.url, 'healthy'],
      [b.url, 'unhealthy'],
    ]);
  });
});
