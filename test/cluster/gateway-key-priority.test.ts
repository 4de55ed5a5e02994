/**
 * Per-key priority floors at the gateway (KEY:RPS:BURST:PRIORITY): a real gateway in front of
 * a real worker on loopback (demo model, --scheduling-policy priority, one sequence at a
 * time). A batch key's request asking for priority -100 is still served after an interactive
 * key's request at 0 when both wait behind a running stream: the gateway raised it to the
 * key's floor (10) on its way to the worker.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import type { InferenceEngine } from '../../src/engine/types.js';
import { API_KEY } from '../server/constants.js';
import { loadDemoEngine, startServer, type RunningServer } from '../server/helpers.js';
import { postJson, readSse } from '../server/http.js';
import { waitFor } from './support/processes.js';

describe('gateway per-key priority floors', () => {
  let engine: InferenceEngine;
  let worker: RunningServer;
  let gateway: Gateway;
  let url: string;

  beforeAll(async () => {
    engine = await loadDemoEngine({ schedulingPolicy: 'priority', maxBatchSequences: 1 });
    worker = await startServer({ engine });
    gateway = await buildGateway({
      registry: new StaticRegistry([worker.url]),
      auth: { apiKeys: ['live', 'batch'] },
      workerApiKey: API_KEY,
      keyPriorities: new Map([['batch', 10]]),
      health: { probeIntervalMs: 100 },
    });
    url = await gateway.listen({ port: 0, host: '127.0.0.1' });
    await waitFor(() => gateway.health.healthy().length === 1, 10_000, 'worker healthy');
  });
  afterAll(async () => {
    await gateway?.close();
    await worker?.close();
    await engine?.close();
  });

  test("a batch key cannot go ahead of interactive traffic by asking for a lower priority: it is raised to the key's floor", async () => {
    const as = (key: string) => ({ authorization: `Bearer ${key}` });
    const long = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...as('live') },
      body: JSON.stringify({ model: 'demo-stories', prompt: 'Once upon a time', max_tokens: 150, ignore_eos: true, stream: true }),
    });
    expect(long.status).toBe(200);
    const done: string[] = [];
    let queued: Promise<void>[] = [];
    await readSse(long, () => {
      if (queued.length > 0) return;
      // the batch key's request arrives first and asks to jump the queue
      queued = (
        [
          ['batch', -100],
          ['live', 0],
        ] as const
      ).map(([key, priority]) =>
        postJson(`${url}/v1/completions`, { model: 'demo-stories', prompt: `For ${key}:`, max_tokens: 4, priority }, as(key)).then((r) => {
          expect(r.status, JSON.stringify(r.json)).toBe(200);
          done.push(key);
        }),
      );
    });
    await Promise.all(queued);
    expect(done).toEqual(['live', 'batch']);
  });

  test('a priority floor for a key that is not an API key is refused at start', async () => {
    await expect(
      buildGateway({ registry: new StaticRegistry([]), auth: { apiKeys: ['a'] }, keyPriorities: new Map([['b', 1]]) }),
    ).rejects.toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/not in auth.apiKeys/) });
  });
});
