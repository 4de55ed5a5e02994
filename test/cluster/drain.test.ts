import { afterAll, beforeAll, expect, test } from 'vitest';
import { call } from './support/client.js';
import { GATEWAY_KEY, startCluster, type TestCluster } from './support/cluster.js';
import { httpStatus, MODEL, waitFor } from './support/processes.js';

// SIGTERM on a worker behind the gateway: it leaves the registry first, /ready turns 503
// while /health stays 200, its in-flight streams finish there, new requests go elsewhere.
let cluster: TestCluster;
const auth = { authorization: `Bearer ${GATEWAY_KEY}` };
// Long enough to still be running when the SIGTERM lands.
const STREAM_TOKENS = 40;

beforeAll(async () => {
  cluster = await startCluster({ workers: 2, worker: { tokenDelayMs: 60 }, gateway: { health: { probeIntervalMs: 100 } } });
});
afterAll(async () => cluster?.close());

test('SIGTERM drains a worker without failing anything', async () => {
  const body = {
    model: MODEL,
    prompt: 'Once upon a time',
    max_tokens: STREAM_TOKENS,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  };
  let started = 0;
  const streams = Array.from({ length: 4 }, () =>
    call(cluster.url, '/v1/completions', body, auth, (text) => {
      if (text.length === 1) started++;
    }),
  );
  await waitFor(() => started === 4, 60_000, 'all streams under way');
  const victim = cluster.workers.reduce((best, w) =>
    cluster.gateway.balancer.outstanding(w.url).requests > cluster.gateway.balancer.outstanding(best.url).requests ? w : best,
  );
  const other = cluster.workers.find((w) => w !== victim)!;
  const inFlightThere = cluster.gateway.balancer.outstanding(victim.url).requests;
  expect(inFlightThere).toBeGreaterThan(0);
  victim.kill('SIGTERM');

  // 1. It leaves the registry (deregistered by its agent) before anything is refused.
  const leftMs = await waitFor(() => !cluster.gateway.health.snapshot().some((w) => w.url === victim.url), 3000, 'deregistration');
  // 2. While draining: /ready 503, /health 200.
  expect(await httpStatus(`${victim.url}/ready`)).toBe(503);
  expect(await httpStatus(`${victim.url}/health`)).toBe(200);
  // 3. New requests go elsewhere (the gateway names the worker that answered) and succeed.
  const during = await Promise.all(
    Array.from({ length: 3 }, (_, i) =>
      call(
        cluster.url,
        '/v1/completions',
        { model: MODEL, prompt: 'The cat', max_tokens: 4, temperature: 0, ...(i === 0 ? { stream: true } : {}) },
        auth,
      ),
    ),
  );
  for (const r of during) expect([r.status, r.error, r.worker]).toEqual([200, null, other.url]);
  // 4. The streams that were running on it finish there, complete, without a resume.
  const done = await Promise.all(streams);
  expect(done.filter((r) => r.worker === victim.url)).toHaveLength(inFlightThere);
  for (const r of done) {
    expect(r.error).toBeNull();
    expect(r.usage?.completion_tokens).toBe(STREAM_TOKENS);
    expect(r.text).toBe(done[0]!.text);
  }
  const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
  expect(metrics).not.toMatch(/autoglm:gateway_failovers_total\{outcome="resumed"\} [1-9]/);
  // 5. Then it exits cleanly.
  expect(await victim.exited).toBe(0);
  console.log(
    `drain: ${inFlightThere} streams finished on the draining worker; it left the registry ${Math.round(leftMs)} ms after SIGTERM`,
  );
});
