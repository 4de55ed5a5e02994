import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { EtcdClient } from '../../src/cluster/registry/etcd-client.js';
import { EtcdRegistry } from '../../src/cluster/registry/etcd-registry.js';
import { call } from './support/client.js';
import { ETCD_BIN, freePort, httpStatus, spawnWorker, stopAll, waitFor, waitReady, type WorkerProcess } from './support/processes.js';

// etcd goes away and comes back (same data, same ports) under a gateway that watches it
// and scripted workers that hold leases: the gateway keeps serving its last view while etcd
// is down, and afterwards the view tracks etcd again (a worker killed then disappears).
const SECRET = 'etcd-restart-secret';
const dir = mkdtempSync(join(tmpdir(), 'autoglm-etcd-restart-'));
let clientPort = 0;
let peerPort = 0;
let etcd: ChildProcess | null = null;
let gateway: Gateway;
let url: string;
const workers: WorkerProcess[] = [];

async function startEtcdHere(): Promise<void> {
  etcd = spawn(
    ETCD_BIN,
    [
      ...['--name', 'restart', '--data-dir', join(dir, 'data')],
      ...['--listen-client-urls', `http://127.0.0.1:${clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${clientPort}`],
      ...['--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`],
      ...['--initial-cluster', `restart=http://127.0.0.1:${peerPort}`, '--logger', 'zap', '--log-level', 'error'],
    ],
    { stdio: 'ignore' },
  );
  await waitFor(async () => (await httpStatus(`http://127.0.0.1:${clientPort}/health`)) === 200, 20_000, 'etcd /health');
}

async function stopEtcdHere(): Promise<void> {
  const p = etcd;
  etcd = null;
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}

beforeAll(async () => {
  [clientPort, peerPort] = [await freePort(), await freePort()];
  await startEtcdHere();
  gateway = await buildGateway({
    registry: new EtcdRegistry({ url: `http://127.0.0.1:${clientPort}`, retryMs: 100 }),
    auth: { apiKeys: [], disabled: true },
    clusterSecret: SECRET,
    health: { probeIntervalMs: 100 },
  });
  url = await gateway.listen({ port: 0, host: '127.0.0.1' });
  for (let i = 0; i < 2; i++) {
    const w = spawnWorker({ kind: 'scripted', port: await freePort(), etcd: `http://127.0.0.1:${clientPort}`, clusterSecret: SECRET });
    workers.push(w);
    await waitReady(w, 20_000);
  }
  await waitFor(() => gateway.health.healthy().length === 2, 10_000, 'both workers in the gateway');
});

afterAll(async () => {
  await stopAll(workers);
  await gateway?.close();
  await stopEtcdHere();
  rmSync(dir, { recursive: true, force: true });
});

const healthyUrls = (): string[] =>
  gateway.health
    .healthy()
    .map((w) => w.url)
    .sort();

test('etcd killed and restarted: the last view serves meanwhile, then the watch is live again', async () => {
  const all = workers.map((w) => w.url).sort();
  await stopEtcdHere();
  // Longer than the workers' lease TTL (2 s): nothing in the gateway's view may lapse.
  for (let i = 0; i < 6; i++) {
    const r = await call(url, '/v1/completions', { model: 'demo-stories', prompt: 'hi', max_tokens: 3, temperature: 0 });
    expect([r.status, r.error]).toEqual([200, null]);
    await new Promise((res) => setTimeout(res, 500));
  }
  expect(healthyUrls()).toEqual(all);

  await startEtcdHere();
  // The workers re-register (their keep-alives failed meanwhile); the view stays whole.
  await new Promise((res) => setTimeout(res, 3000));
  expect(healthyUrls()).toEqual(all);
  // And it follows etcd again: a worker killed now leaves when its lease lapses.
  const [a] = workers as [WorkerProcess];
  a.kill('SIGKILL');
  await a.exited;
  await waitFor(() => !gateway.health.snapshot().some((w) => w.url === a.url), 10_000, 'the killed worker leaving the view');
  expect(healthyUrls()).toEqual(all.filter((u) => u !== a.url));
});

test("a worker frozen past its lease's TTL leaves the view, and rejoins by itself when it thaws", async () => {
  const b = workers[1]!;
  b.kill('SIGSTOP');
  try {
    await waitFor(() => !gateway.health.snapshot().some((w) => w.url === b.url), 10_000, 'the frozen worker leaving the view');
  } finally {
    b.kill('SIGCONT');
  }
  // Its next keep-alive finds the lease gone: it grants a new one and puts its key again.
  await waitFor(() => healthyUrls().includes(b.url), 10_000, 'the thawed worker back in rotation');
  const r = await call(url, '/v1/completions', { model: 'demo-stories', prompt: 'hi', max_tokens: 3, temperature: 0 });
  expect([r.status, r.error]).toEqual([200, null]);
});

test('a gateway started while etcd is down starts, answers 503 not ready, and converges when etcd comes up', async () => {
  await stopEtcdHere();
  const late = await buildGateway({
    registry: new EtcdRegistry({ url: `http://127.0.0.1:${clientPort}`, retryMs: 100 }),
    auth: { apiKeys: [], disabled: true },
    clusterSecret: SECRET,
    health: { probeIntervalMs: 100 },
  });
  try {
    const lateUrl = await late.listen({ port: 0, host: '127.0.0.1' });
    expect(await httpStatus(`${lateUrl}/ready`)).toBe(503);
    await startEtcdHere();
    const b = workers[1]!;
    await waitFor(() => late.health.healthy().some((w) => w.url === b.url), 10_000, 'the late gateway seeing the worker');
    expect(await httpStatus(`${lateUrl}/ready`)).toBe(200);
  } finally {
    await late.close();
  }
});

test('a worker key rewritten to a value that is not a worker entry leaves the view, as a fresh listing would leave it out', async () => {
  const prefix = '/autoglm-rewrite/workers/';
  const c = new EtcdClient(`http://127.0.0.1:${clientPort}`);
  await c.put(`${prefix}w`, JSON.stringify({ url: 'http://127.0.0.1:1' }));
  const registry = new EtcdRegistry({ url: `http://127.0.0.1:${clientPort}`, prefix, retryMs: 100 });
  await registry.start();
  try {
    expect(registry.list()).toEqual([{ id: 'w', url: 'http://127.0.0.1:1' }]);
    await c.put(`${prefix}w`, 'draining, do not use');
    await waitFor(() => registry.list().length === 0, 3000, 'the rewritten key leaving the view');
    expect(registry.lastSkipped).toMatch(/^\/autoglm-rewrite\/workers\/w: not a worker entry/);
  } finally {
    await registry.stop();
  }
});

test('stop() while the registry re-lists: the view does not change after stop()', async () => {
  // A stand-in for etcd's JSON gateway: the first listing names a worker, every watch ends
  // at once (so the registry re-lists), and later listings are slow and empty.
  let ranges = 0;
  const fake = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/v3/watch') return void res.writeHead(200).end('');
      const kvs =
        ranges++ === 0
          ? [{ key: Buffer.from('/p/w').toString('base64'), value: Buffer.from('{"url":"http://127.0.0.1:1"}').toString('base64') }]
          : [];
      setTimeout(() => res.writeHead(200).end(JSON.stringify({ header: { revision: '5' }, kvs })), ranges === 1 ? 0 : 400);
    });
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
  const registry = new EtcdRegistry({ url: `http://127.0.0.1:${(fake.address() as { port: number }).port}`, prefix: '/p/', retryMs: 20 });
  try {
    await registry.start();
    expect(registry.list()).toHaveLength(1);
    const changes: number[] = [];
    registry.onChange((ws) => changes.push(ws.length));
    await waitFor(() => ranges >= 2, 3000, 'the registry re-listing');
    await registry.stop();
    expect(changes).toEqual([]);
    expect(registry.list()).toHaveLength(1);
  } finally {
    fake.closeAllConnections();
    fake.close();
  }
});
