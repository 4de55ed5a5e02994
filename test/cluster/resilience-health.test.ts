import { expect, test } from 'vitest';
import { HealthMonitor } from '../../src/cluster/health-monitor.js';
import type { ProbeResult } from '../../src/cluster/ready-probe.js';

// A worker id that the registry moves to a new URL (an etcd key rewritten, a heartbeat
// with an explicit id from a restarted worker on a new port): a probe of the old URL still
// in flight must not speak for the new one. It used to: the replaced entry was never
// marked removed, so its late "unhealthy" reached every state listener under the same id
// (the gateway cut in-flight requests to the new URL as timeouts, metrics said unhealthy).
test('a probe of a replaced URL that lands late changes nothing for the worker id', async () => {
  const pending = new Map<string, (r: ProbeResult) => void>();
  const probe = (url: string): Promise<ProbeResult> => new Promise((resolve) => pending.set(url, resolve));
  const monitor = new HealthMonitor({ probeIntervalMs: 60_000, unhealthyThreshold: 1 }, undefined, probe);
  const heard: string[] = [];
  monitor.onStateChange((id, state, url) => heard.push(`${id} ${state} ${url}`));

  monitor.sync([{ id: 'w', url: 'http://127.0.0.1:1' }]);
  pending.get('http://127.0.0.1:1/ready')!({ status: 200, body: '{}' });
  await new Promise((r) => setImmediate(r));
  monitor.probeAll(); // a second probe of the old URL, left in flight
  monitor.sync([{ id: 'w', url: 'http://127.0.0.1:2' }]);
  pending.get('http://127.0.0.1:2/ready')!({ status: 200, body: '{}' });
  await new Promise((r) => setImmediate(r));
  expect(monitor.state('w')).toBe('healthy');

  // The old URL's process is gone: its probe fails, late.
  const late = heard.length;
  pending.get('http://127.0.0.1:1/ready')!({ error: 'ECONNREFUSED' });
  await new Promise((r) => setImmediate(r));
  expect(heard.slice(late)).toEqual([]);
  expect(monitor.state('w')).toBe('healthy');
  expect(monitor.snapshot().map((w) => [w.url, w.state])).toEqual([['http://127.0.0.1:2', 'healthy']]);
});

// A crash-looping worker leaves the registry when its heartbeat TTL or etcd lease lapses
// (seconds; a real worker's restart takes longer) and comes back on the same URL. It used
// to come back with a clean record every time, so the ejection cool-down, documented to
// double on each repeat, never grew for the very case it exists for. The record is now
// kept by URL for ejectionDecayMs after the worker leaves.
test('a worker that is ejected, leaves the registry and comes back keeps its ejection count (for ejectionDecayMs)', async () => {
  let nowMs = 0;
  const monitor = new HealthMonitor(
    { probeIntervalMs: 60_000, baseEjectionMs: 1000, maxEjectionMs: 30_000, ejectionDecayMs: 60_000 },
    () => nowMs,
    async () => ({ status: 200, body: '{}' }),
  );
  const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
  const cycle = async (id: string): Promise<number> => {
    monitor.sync([{ id, url: 'http://127.0.0.1:7' }]);
    await settle();
    expect(monitor.state(id)).toBe('healthy');
    nowMs += 100;
    monitor.reportFailure(id, 'connect');
    const cooldown = monitor.snapshot()[0]!.ejectedForMs;
    monitor.sync([]); // its TTL or lease lapsed while it restarts
    nowMs += 5_000;
    return cooldown;
  };
  // The same URL under a new id each time too (etcd: a restarted worker takes a new key).
  expect([await cycle('a'), await cycle('a'), await cycle('b'), await cycle('a')]).toEqual([1000, 2000, 4000, 8000]);
  // Gone longer than ejectionDecayMs: a clean record.
  nowMs += 60_000;
  expect(await cycle('a')).toBe(1000);
});
