import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildGateway } from '../../src/cluster/gateway/build-gateway.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import { call } from './support/client.js';
import { CLUSTER_SECRET, GATEWAY_KEY, startCluster, type TestCluster } from './support/cluster.js';
import { freePort, MODEL, waitFor } from './support/processes.js';

// Two workers behind a gateway. Scripted workers get 40 ms per token so a kill lands mid-stream.
let cluster: TestCluster;
const auth = { authorization: `Bearer ${GATEWAY_KEY}` };

beforeAll(async () => {
  cluster = await startCluster({ workers: 2, worker: { tokenDelayMs: 40 }, gateway: { health: { probeIntervalMs: 100 } } });
});
afterAll(async () => cluster?.close());

const metric = async (name: string): Promise<number> => {
  const text = await (await fetch(`${cluster.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
};

describe('gateway', () => {
  test('API keys: missing or wrong -> 401 in the OpenAI error shape', async () => {
    const body = { model: MODEL, prompt: 'Hi', max_tokens: 2 };
    const none = await call(cluster.url, '/v1/completions', body);
    expect(none.status).toBe(401);
    expect(none.error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key', param: null });
    expect((await call(cluster.url, '/v1/completions', body, { authorization: 'Bearer nope' })).status).toBe(401);
  });

  test("a worker's client error (unknown model) comes back as is, without retries", async () => {
    const before = await metric('autoglm:gateway_retries_total');
    const r = await call(cluster.url, '/v1/chat/completions', { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }, auth);
    expect(r.status).toBe(404);
    expect(r.error).toMatchObject({ code: 'model_not_found' });
    expect(await metric('autoglm:gateway_retries_total')).toBe(before);
  });

  test('models, tokenize and metrics are served through the gateway', async () => {
    const models = (await (await fetch(`${cluster.url}/v1/models`, { headers: auth })).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toContain(MODEL);
    const workersView = (await (await fetch(`${cluster.url}/cluster/workers`, { headers: auth })).json()) as {
      workers: { state: string }[];
    };
    expect(workersView.workers.map((w) => w.state)).toEqual(['healthy', 'healthy']);
    expect(await metric('autoglm:gateway_worker_state{worker=')).toBe(2);
  });

  test('a stream cut mid-way (SIGKILL) is resumed elsewhere: identical text, one role chunk, one id, exact usage', async () => {
    const body = {
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me about a dog.' }],
      // long enough that the worker cannot finish before the kill lands (a stream that
      // completes from socket buffers would need no resume)
      max_tokens: 256,
      ignore_eos: true,
      temperature: 0.9,
      seed: 1234,
    };
    const reference = await call(cluster.workers[0]!.url, '/v1/chat/completions', body, { 'x-autoglm-cluster-secret': CLUSTER_SECRET });
    expect(reference.status).toBe(200);

    const resumedBefore = await metric('autoglm:gateway_failovers_total{outcome="resumed"}');
    // Kill whichever worker took the stream once the client has a few tokens.
    let victim = -1;
    let fired = false;
    let killedAt = 0;
    const got = await call(
      cluster.url,
      '/v1/chat/completions',
      { ...body, stream: true, stream_options: { include_usage: true } },
      auth,
      (text, headers) => {
        if (fired || text.length < 3) return;
        fired = true;
        victim = cluster.workers.findIndex((w) => w.url === headers.get('x-autoglm-worker'));
        cluster.workers[victim]!.kill('SIGKILL');
        killedAt = performance.now();
      },
    );
    expect(victim).toBeGreaterThanOrEqual(0);
    console.log(`resumed stream finished ${Math.round(performance.now() - killedAt)} ms after the kill`);
    expect(got.error).toBeNull();
    expect(got.text).toBe(reference.text);
    expect(got.usage).toMatchObject({
      prompt_tokens: reference.usage!.prompt_tokens,
      completion_tokens: reference.usage!.completion_tokens,
    });
    expect(got.roleChunks).toBe(1);
    expect(got.ids.size).toBe(1);
    expect(await metric('autoglm:gateway_failovers_total{outcome="resumed"}')).toBe(resumedBefore + 1);
    await cluster.workers[victim]!.exited;
    cluster.restart(victim);
    await waitFor(() => cluster.healthyUrls().length === 2, 90_000, 'restarted worker back');
  });

  test('no healthy worker -> 503 no_healthy_worker at once; per-key rate limits -> 429', async () => {
    const dead = await freePort();
    const g = await buildGateway({
      registry: new StaticRegistry([`http://127.0.0.1:${dead}`]),
      auth: { apiKeys: ['k'] },
      rateLimit: { requestsPerSecond: 0.01, burst: 1 }, // no refill between the two calls, however slow the machine
    });
    const url = await g.listen({ port: 0, host: '127.0.0.1' });
    try {
      const start = performance.now();
      const r = await call(url, '/v1/completions', { model: MODEL, prompt: 'x', max_tokens: 2 }, { authorization: 'Bearer k' });
      expect(performance.now() - start).toBeLessThan(500);
      expect(r.status).toBe(503);
      expect(r.error).toMatchObject({ code: 'no_healthy_worker', type: 'server_error' });
      expect((await fetch(`${url}/ready`)).status).toBe(503);
      expect((await fetch(`${url}/health`)).status).toBe(200);
      const limited = await call(url, '/v1/completions', { model: MODEL, prompt: 'x', max_tokens: 2 }, { authorization: 'Bearer k' });
      expect(limited.status).toBe(429);
      expect(limited.error).toMatchObject({ code: 'rate_limit_exceeded' });
    } finally {
      await g.close();
    }
  });
});
