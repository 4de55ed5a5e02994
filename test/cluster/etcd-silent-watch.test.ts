import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { EtcdClient } from '../../src/cluster/registry/etcd-client.js';
import { EtcdRegistry } from '../../src/cluster/registry/etcd-registry.js';
import { startEtcd, waitFor, type ServiceProcess } from './support/processes.js';

// A network partition can leave the registry's watch connection half-open: no bytes, no
// error, no end. A TCP relay in front of a real etcd freezes the connections it holds (as
// such a partition would) while letting new ones through; the registry must notice from its
// periodic listing that the watch stopped delivering, and watch again.
let etcd: ServiceProcess;
let relay: Server;
let relayUrl: string;
type Pair = { client: Socket; upstream: Socket };
/** Connections not frozen yet, and every connection (for the clean-up). */
const held = new Set<Pair>();
const all = new Set<Pair>();

beforeAll(async () => {
  etcd = await startEtcd();
  const target = new URL(etcd.url);
  relay = createServer((client) => {
    const upstream = createConnection(Number(target.port), target.hostname);
    const pair = { client, upstream };
    held.add(pair);
    all.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = (): void => {
      held.delete(pair);
      all.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  relayUrl = `http://127.0.0.1:${(relay.address() as { port: number }).port}`;
});

afterAll(async () => {
  for (const { client, upstream } of all) {
    client.destroy();
    upstream.destroy();
  }
  await new Promise((r) => relay?.close(r));
  await etcd?.stop();
});

/** Every connection open now stops carrying bytes either way, and stays open. */
function freezeHeldConnections(): number {
  for (const { client, upstream } of held) {
    client.unpipe(upstream);
    upstream.unpipe(client);
    client.pause();
    upstream.pause();
  }
  const n = held.size;
  held.clear(); // later connections pass
  return n;
}

test('a watch whose connection goes silent is noticed by the periodic listing and restarted', async () => {
  const prefix = '/autoglm-silent/workers/';
  const direct = new EtcdClient(etcd.url);
  await direct.put(`${prefix}a`, JSON.stringify({ url: 'http://127.0.0.1:1' }));
  const registry = new EtcdRegistry({ url: relayUrl, prefix, retryMs: 50, resyncMs: 300 });
  // the same without the periodic listing: what a silent watch did before it existed
  const unsynced = new EtcdRegistry({ url: relayUrl, prefix, retryMs: 50, resyncMs: 0 });
  await registry.start();
  await unsynced.start();
  try {
    expect(registry.list().map((w) => w.id)).toEqual(['a']);
    // the watch is live: a change arrives through it
    await direct.put(`${prefix}b`, JSON.stringify({ url: 'http://127.0.0.1:2' }));
    await waitFor(() => registry.list().length === 2 && unsynced.list().length === 2, 3000, 'b through the watches');

    expect(freezeHeldConnections()).toBeGreaterThanOrEqual(1);
    await direct.put(`${prefix}c`, JSON.stringify({ url: 'http://127.0.0.1:3' }));
    await direct.put(`${prefix}a`, JSON.stringify({ url: 'http://127.0.0.1:5' })); // a moved
    const view = (): string =>
      registry
        .list()
        .map((w) => `${w.id}=${w.url}`)
        .sort()
        .join(' ');
    const ms = await waitFor(
      () => view() === 'a=http://127.0.0.1:5 b=http://127.0.0.1:2 c=http://127.0.0.1:3',
      5000,
      'the view to catch up after the watch went silent',
    );
    expect(ms).toBeLessThan(3000);
    expect(registry.watchRestarts).toBeGreaterThanOrEqual(1);
    // the registry without it still serves the view from before the freeze
    expect(
      unsynced
        .list()
        .map((w) => `${w.id}=${w.url}`)
        .sort(),
    ).toEqual(['a=http://127.0.0.1:1', 'b=http://127.0.0.1:2']);
    expect(unsynced.watchRestarts).toBe(0);

    // and the new watch delivers changes again
    await direct.put(`${prefix}d`, JSON.stringify({ url: 'http://127.0.0.1:4' }));
    await waitFor(() => registry.list().some((w) => w.id === 'd'), 3000, 'd through the new watch');
  } finally {
    await registry.stop();
    await unsynced.stop();
  }
});
