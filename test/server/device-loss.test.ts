/**
 * A worker whose GPU device is lost (a driver reset, a GPU gone from the bus) must say so
 * instead of failing every request one by one: /ready and /health turn 503 (a gateway stops
 * routing to it, Kubernetes' liveness probe restarts it), generation requests get a 503
 * gpu_device_lost error body at once, and the process stays up to answer all of that.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.js';
import type { InferenceEngine } from '../../src/engine/types.js';
import { loadDemoEngine, postJson, startServer, waitFor, type RunningServer } from './helpers.js';

let engine: InferenceEngine;
let running: RunningServer;

beforeAll(async () => {
  engine = await loadDemoEngine({ responseCacheEntries: 0 });
  running = await startServer({ engine });
});

afterAll(async () => {
  await running?.close();
  await engine?.close();
});

const completion = { model: 'demo-stories', prompt: 'Once upon a time', max_tokens: 4, temperature: 0 };
const get = async (path: string) => {
  const r = await fetch(`${running.url}${path}`);
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
};

describe('GPU device lost', () => {
  it('turns /ready and /health to 503 and answers generation with 503 gpu_device_lost, without exiting', async () => {
    expect((await get('/ready')).status).toBe(200);
    expect((await get('/health')).status).toBe(200);
    expect((await postJson(`${running.url}/v1/completions`, completion)).status).toBe(200);
    expect(engine.fault?.()).toBeNull();

    // what a driver reset looks like to WebGPU: the device is gone under the engine
    const rt = (engine as Engine).rt;
    rt.device.destroy();
    await waitFor(() => engine.fault?.() !== null, 5000, 'the engine sees the lost device');

    const ready = await get('/ready');
    expect(ready.status).toBe(503);
    expect(ready.json).toMatchObject({ status: 'failed', reason: expect.stringMatching(/GPU device was lost/) });
    const health = await get('/health');
    expect(health.status).toBe(503);
    expect(health.json).toMatchObject({ status: 'failed' });

    for (const stream of [false, true]) {
      const r = await postJson(`${running.url}/v1/completions`, { ...completion, stream });
      expect(r.status, JSON.stringify(r.json)).toBe(503);
      expect(r.json.error).toMatchObject({ code: 'gpu_device_lost', type: 'server_error' });
    }
    // the process is still answering
    expect((await get('/v1/models')).status).toBeLessThan(500);
  });
});
