import { expect, test, vi } from 'vitest';
import { buildGateway } from '../../src/cluster/gateway/build-gateway.js';
import { HeartbeatRegistry } from '../../src/cluster/registry/heartbeat-registry.js';

// A burst of registrations (a fleet starting at once, or a flood): each one used to
// rewrite every known worker's state metric and scan the worker list once per known id,
// O(n^2) per registration and O(n^3) for the burst, on the event loop that relays tokens
// (1000 registrations: 5.2 s; 4000: 27 s). A change now touches only the workers that
// joined, left or moved.
test('n registrations touch the worker state metric O(n) times, not O(n^2)', async () => {
  const g = await buildGateway({
    registry: new HeartbeatRegistry({ defaultTtlMs: 60_000 }),
    auth: { apiKeys: [], disabled: true },
    clusterSecret: 's',
    // No probing in this test: only the registry's changes are counted.
    health: { probeIntervalMs: 60_000 },
  });
  try {
    const setState = vi.spyOn(g.metrics, 'setWorkerState');
    const n = 300;
    for (let i = 0; i < n; i++) {
      const r = await g.app.inject({
        method: 'POST',
        url: '/cluster/register',
        headers: { 'x-autoglm-cluster-secret': 's' },
        payload: { url: `http://127.0.0.1:${20_000 + i}` },
      });
      expect(r.statusCode).toBe(200);
    }
    // One per worker joining, plus its state changes from probes (each probe of a closed
    // port changes nothing: a new worker starts unhealthy); the old code made n(n+1)/2.
    expect(setState.mock.calls.length).toBeLessThanOrEqual(2 * n);
    const r = await g.app.inject({
      method: 'POST',
      url: '/cluster/deregister',
      headers: { 'x-autoglm-cluster-secret': 's' },
      payload: { url: 'http://127.0.0.1:20000' },
    });
    expect(r.json()).toEqual({ removed: true });
    expect(setState).toHaveBeenLastCalledWith('http://127.0.0.1:20000', null);
  } finally {
    await g.close();
  }
});
