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
const registries: DnsRegistry[] = [];

beforeAll(async () => {
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
      '--cache-size=0',
      '--srv-host=_autoglm._tcp.workers.test,w1.workers.test,8101',
      '--srv-host=_autoglm._tcp.workers.test,w2.remote.test,8102',
      '--srv-host=_gone._tcp.workers.test,w1.workers.test,8101',
      '--srv-host=_gone._tcp.workers.test,nothing.workers.test,8103',
    ],
  });
});

afterAll(async () => {
  for (const r of registries) await r.stop();
  await front?.stop();
  await remote?.stop();
});

const urls = (r: DnsRegistry): string[] =>
  r
    .list()
    .map((w) => w.url)
    .sort();

test('an SRV target whose DNS server fails after answering keeps its workers; a target with no address has none', async () => {
  const r = new DnsRegistry({
    name: '_autoglm._tcp.workers.test',
    recordType: 'SRV',
    servers: [front.url],
    refreshMs: 60_000,
    timeoutMs: 500,
  });
  registries.push(r);
  await r.start();
  expect(urls(r)).toEqual(['http://127.0.0.1:8101', 'http://127.0.0.9:8102']);

  await remote.stop();
  await r.refresh();
  expect(urls(r)).toEqual(['http://127.0.0.1:8101', 'http://127.0.0.9:8102']);
  expect(r.lastError).toMatch(/^w2\.remote\.test: /);

  // A target that authoritatively does not exist contributes nothing, as before.
  const gone = new DnsRegistry({
    name: '_gone._tcp.workers.test',
    recordType: 'SRV',
    servers: [front.url],
    refreshMs: 60_000,
    timeoutMs: 500,
  });
  registries.push(gone);
  await gone.start();
  expect(urls(gone)).toEqual(['http://127.0.0.1:8101']);
});
