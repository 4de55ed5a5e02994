import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { DnsRegistry } from '../../src/cluster/registry/dns-registry.js';
import { startDnsmasq, type ServiceProcess } from './support/processes.js';

// SRV targets in a zone another DNS server answers for (dnsmasq forwards remote.test to a
// second dnsmasq). When that server fails after it had answered, the target's workers are
// a transient failure like any other: they stay in the view. They used to be dropped, as
// if the target had no address (every lookup error of a target read as "none").
let front: ServiceProcess;
let remote: ServiceProcess;
/** A DNS server that never answers (the zone slow.test is forwarded to it). */
let blackhole: Socket;
const registries: DnsRegistry[] = [];

beforeAll(async () => {
  blackhole = createSocket('udp4');
  await new Promise<void>((r) => blackhole.bind(0, '127.0.0.1', () => r()));
  const remoteDir = mkdtempSync(join(tmpdir(), 'autoglm-dns-remote-'));
  const remoteHosts = join(remoteDir, 'hosts');
  writeFileSync(remoteHosts, '127.0.0.9 w2.remote.test\n', { mode: 0o644 });
  remote = await startDnsmasq({ dir: remoteDir, hostsFile: remoteHosts, domain: 'remote.test' });
  const dir = mkdtempSync(join(tmpdir(), 'autoglm-dns-front-'));
  const hosts = join(dir, 'hosts');
  writeFileSync(hosts, '127.0.0.1 w1.workers.test\n', { mode: 0o644 });
  front = await startDnsmasq({
    dir,
    hostsFile: hosts,
    domain: 'workers.test',
    extraArgs: [
      `--server=/remote.test/${remote.url.replace(':', '#')}`,
      `--server=/slow.test/127.0.0.1#${blackhole.address().port}`,
      '--cache-size=0',
      '--srv-host=_autoglm._tcp.workers.test,w1.workers.test,8101',
      '--srv-host=_autoglm._tcp.workers.test,w2.remote.test,8102',
      '--srv-host=_gone._tcp.workers.test,w1.workers.test,8101',
      '--srv-host=_gone._tcp.workers.test,nothing.workers.test,8103',
      '--srv-host=_slow._tcp.workers.test,w1.workers.test,8101',
      '--srv-host=_slow._tcp.workers.test,w3.slow.test,8104',
    ],
  });
});

afterAll(async () => {
  for (const r of registries) await r.stop();
  await front?.stop();
  await remote?.stop();
  blackhole?.close();
});

const urls = (r: DnsRegistry): string[] =>
  r
    .list()
    .map((w) => w.url)
    .sort();

/** An SRV registry on the front server, refreshed only when a test asks; stopped after all. */
function srvRegistry(name: string, timeoutMs: number): DnsRegistry {
  const r = new DnsRegistry({ name, recordType: 'SRV', servers: [front.url], refreshMs: 60_000, timeoutMs });
  registries.push(r);
  return r;
}

test('an SRV target whose DNS server fails after answering keeps its workers; a target with no address has none', async () => {
  const r = srvRegistry('_autoglm._tcp.workers.test', 500);
  await r.start();
  expect(urls(r)).toEqual(['http://127.0.0.1:8101', 'http://127.0.0.9:8102']);

  await remote.stop();
  await r.refresh();
  expect(urls(r)).toEqual(['http://127.0.0.1:8101', 'http://127.0.0.9:8102']);
  expect(r.lastError).toMatch(/^w2\.remote\.test: /);

  // A target that authoritatively does not exist contributes nothing, as before.
  const gone = srvRegistry('_gone._tcp.workers.test', 500);
  await gone.start();
  expect(urls(gone)).toEqual(['http://127.0.0.1:8101']);
});

test('stop() during an SRV refresh whose target lookup hangs: the view does not change after stop()', async () => {
  const r = srvRegistry('_slow._tcp.workers.test', 2000);
  const changes: number[] = [];
  r.onChange((ws) => changes.push(ws.length));
  // Not start(): one refresh, left in flight on the target that never resolves.
  const refreshing = r.refresh();
  await new Promise((res) => setTimeout(res, 300));
  await r.stop();
  await refreshing;
  expect(changes).toEqual([]);
  expect(r.list()).toEqual([]);
});
