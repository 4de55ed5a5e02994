import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DnsRegistry } from '../../src/cluster/registry/dns-registry.js';
import { startDnsmasq, waitFor, type ServiceProcess } from './support/processes.js';

// A real dnsmasq on a loopback port, authoritative for workers.test: A records from a
// hosts file (re-read on SIGHUP), SRV records from flags (each target its own port).
let dns: ServiceProcess;
let hostsFile: string;
const registries: DnsRegistry[] = [];

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'autoglm-dns-'));
  hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, '127.0.0.2 workers.workers.test\n127.0.0.3 workers.workers.test\n', { mode: 0o644 });
  dns = await startDnsmasq({
    dir,
    hostsFile,
    domain: 'workers.test',
    extraArgs: [
      '--host-record=w1.workers.test,127.0.0.1',
      '--srv-host=_autoglm._tcp.workers.test,w1.workers.test,8101',
      '--srv-host=_autoglm._tcp.workers.test,w1.workers.test,8102',
    ],
  });
});

afterAll(async () => {
  for (const r of registries) await r.stop();
  await dns?.stop();
});

function registry(options: Partial<ConstructorParameters<typeof DnsRegistry>[0]> & { name: string }): DnsRegistry {
  const r = new DnsRegistry({ servers: [dns.url], refreshMs: 100, timeoutMs: 500, ...options });
  registries.push(r);
  return r;
}

const urls = (r: DnsRegistry): string[] =>
  r
    .list()
    .map((w) => w.url)
    .sort();

describe('DnsRegistry against dnsmasq', () => {
  test('A records: every address at the worker port', async () => {
    const r = registry({ name: 'workers.workers.test', port: 8000 });
    await r.start();
    expect(urls(r)).toEqual(['http://127.0.0.2:8000', 'http://127.0.0.3:8000']);
  });

  test('SRV records: target addresses with each record port', async () => {
    const r = registry({ name: '_autoglm._tcp.workers.test', recordType: 'SRV' });
    await r.start();
    expect(urls(r)).toEqual(['http://127.0.0.1:8101', 'http://127.0.0.1:8102']);
  });

  test('re-resolves periodically: added and removed records show up, listeners hear of it', async () => {
    const r = registry({ name: 'workers.workers.test', port: 8000 });
    await r.start();
    const seen: number[] = [];
    r.onChange((ws) => seen.push(ws.length));
    writeFileSync(hostsFile, '127.0.0.2 workers.workers.test\n127.0.0.3 workers.workers.test\n127.0.0.4 workers.workers.test\n');
    dns.proc.kill('SIGHUP');
    await waitFor(() => r.list().length === 3, 3000, 'three A records');
    writeFileSync(hostsFile, '127.0.0.4 workers.workers.test\n');
    dns.proc.kill('SIGHUP');
    await waitFor(() => r.list().length === 1, 3000, 'one A record');
    expect(urls(r)).toEqual(['http://127.0.0.4:8000']);
    expect(seen).toEqual([3, 1]);
  });

  test('an unknown name is an empty set; an unreachable resolver keeps the last view', async () => {
    const missing = registry({ name: 'nobody.workers.test' });
    await missing.start();
    expect(missing.list()).toEqual([]);
    expect(missing.lastError).toMatch(/ENOTFOUND|ENODATA/);

    const r = registry({ name: '_autoglm._tcp.workers.test', recordType: 'SRV' });
    await r.start();
    expect(r.list()).toHaveLength(2);
    // The resolver goes away (last test: stops the shared dnsmasq): the view must survive.
    await dns.stop();
    await r.refresh();
    expect(r.list()).toHaveLength(2);
    expect(r.lastError).not.toBeNull();
  });
});
