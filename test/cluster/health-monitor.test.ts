import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { UpstreamPool } from '../../src/cluster/gateway/upstream-http.js';
import { HealthMonitor } from '../../src/cluster/health-monitor.js';
import { fetchReadyProbe, poolReadyProbe, type ReadyProbe } from '../../src/cluster/ready-probe.js';
import { waitFor } from './support/processes.js';
import { ReadyStub } from './support/ready-stub.js';

const stubs: ReadyStub[] = [];
const monitors: HealthMonitor[] = [];
const pools: UpstreamPool[] = [];
afterEach(async () => {
  for (const m of monitors.splice(0)) m.stop();
  for (const p of pools.splice(0)) p.close();
  for (const s of stubs.splice(0)) await s.stop();
});

// The monitor's own default (fetch) and the gateway's (its keep-alive pool) must agree.
const probes: Array<[string, () => ReadyProbe]> = [
  ['fetch', () => fetchReadyProbe],
  [
    'the gateway pool',
    () => {
      const pool = new UpstreamPool();
      pools.push(pool);
      return poolReadyProbe(pool);
    },
  ],
];

let makeProbe: () => ReadyProbe = () => fetchReadyProbe;

async function setup(options: ConstructorParameters<typeof HealthMonitor>[0] = {}) {
  const stub = await new ReadyStub().start();
  stubs.push(stub);
  const monitor = new HealthMonitor({ probeIntervalMs: 50, probeTimeoutMs: 150, ...options }, undefined, makeProbe());
  monitors.push(monitor);
  const w = { id: 'w', url: stub.url };
  monitor.sync([w]);
  monitor.start();
  return { stub, monitor, w };
}

describe.each(probes)('HealthMonitor probing over %s', (_name, probe) => {
  beforeEach(() => {
    makeProbe = probe;
  });

  test('a new worker is probed at once and becomes healthy; removal forgets it', async () => {
    const { monitor } = await setup();
    await waitFor(() => monitor.state('w') === 'healthy', 1000, 'healthy');
    expect(monitor.healthy().map((w) => w.id)).toEqual(['w']);
    monitor.sync([]);
    expect(monitor.state('w')).toBeUndefined();
    expect(monitor.healthy()).toEqual([]);
  });

  test('a draining worker (503 server_draining) leaves rotation; a loading one (503 not_ready) is unhealthy', async () => {
    const { stub, monitor } = await setup();
    await waitFor(() => monitor.state('w') === 'healthy', 1000, 'healthy');
    stub.mode = 'draining';
    await waitFor(() => monitor.state('w') === 'draining', 1000, 'draining');
    expect(monitor.healthy()).toEqual([]);
    stub.mode = 'loading';
    await waitFor(() => monitor.state('w') === 'unhealthy', 1000, 'unhealthy');
  });

  test('a dead worker goes unhealthy after the threshold and is back one probe after it restarts', async () => {
    const { stub, monitor } = await setup({ unhealthyThreshold: 2 });
    await waitFor(() => monitor.state('w') === 'healthy', 1000, 'healthy');
    const port = stub.port;
    await stub.stop();
    const downMs = await waitFor(() => monitor.state('w') === 'unhealthy', 2000, 'unhealthy');
    expect(downMs).toBeLessThan(500);
    expect(monitor.snapshot()[0]!.lastProbe).toBe('ECONNREFUSED');
    await stub.start(port);
    const upMs = await waitFor(() => monitor.state('w') === 'healthy', 2000, 'healthy again');
    expect(upMs).toBeLessThan(500);
  });

  test('probe timeouts mark a hanging worker unhealthy (it is never waited on)', async () => {
    const { stub, monitor } = await setup({ unhealthyThreshold: 2 });
    await waitFor(() => monitor.state('w') === 'healthy', 1000, 'healthy');
    stub.mode = 'hang';
    const ms = await waitFor(() => monitor.state('w') === 'unhealthy', 2000, 'unhealthy');
    expect(ms).toBeLessThan(1000);
    expect(monitor.snapshot()[0]!.lastProbe).toBe('timeout');
  });

  test('passive ejection: cool-down without probes, one probe closes the circuit, repeat ejections double', async () => {
    const { stub, monitor } = await setup({ baseEjectionMs: 300, passiveFailureThreshold: 3 });
    const ejections: number[] = [];
    monitor.onEjection((_id, cooldownMs) => ejections.push(cooldownMs));
    await waitFor(() => monitor.state('w') === 'healthy', 1000, 'healthy');
    monitor.reportFailure('w', 'status');
    monitor.reportFailure('w', 'status');
    expect(monitor.state('w')).toBe('healthy'); // below the threshold
    monitor.reportSuccess('w'); // a success resets the run of failures
    monitor.reportFailure('w', 'status');
    monitor.reportFailure('w', 'status');
    expect(monitor.state('w')).toBe('healthy');
    monitor.reportFailure('w', 'status');
    expect(monitor.state('w')).toBe('unhealthy');
    const probesAtEjection = stub.probes;
    await new Promise((r) => setTimeout(r, 200));
    expect(stub.probes).toBe(probesAtEjection); // no probes during the cool-down
    expect(monitor.state('w')).toBe('unhealthy');
    const back = await waitFor(() => monitor.state('w') === 'healthy', 2000, 'half-open probe');
    expect(back).toBeLessThan(400);
    // Refused connections eject at once; the second cool-down is twice the first.
    monitor.reportFailure('w', 'connect');
    expect(monitor.state('w')).toBe('unhealthy');
    expect(ejections).toEqual([300, 600]);
    expect(monitor.snapshot()[0]!.ejections).toBe(2);
  });
});

test('a probe already on its way when the worker is ejected does not undo the ejection', async () => {
  // A probe that answers "ready" only when the test says so.
  const pending: Array<() => void> = [];
  const slowReady: ReadyProbe = () => new Promise((resolve) => pending.push(() => resolve({ status: 200, body: '{}' })));
  const monitor = new HealthMonitor({ passiveFailureThreshold: 1, baseEjectionMs: 60_000, maxEjectionMs: 60_000 }, undefined, slowReady);
  monitors.push(monitor);
  monitor.sync([{ id: 'w', url: 'http://127.0.0.1:1' }]);
  pending.shift()!();
  await waitFor(() => monitor.state('w') === 'healthy', 1000, 'healthy');
  monitor.probeAll(); // a probe sets out...
  expect(pending).toHaveLength(1);
  monitor.reportFailure('w', 'reset'); // ...real traffic ejects the worker...
  expect(monitor.state('w')).toBe('unhealthy');
  pending.shift()!(); // ...and the probe's "ready" arrives afterwards.
  await new Promise((r) => setTimeout(r, 20));
  expect(monitor.state('w')).toBe('unhealthy');
  expect(monitor.snapshot()[0]!.ejectedForMs).toBeGreaterThan(50_000);
  monitor.probeAll(); // and no new probe starts during the cool-down
  expect(pending).toHaveLength(0);
});
