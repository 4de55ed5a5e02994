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

/** SIGKILLs the worker serving a stream (the gateway's x-autoglm-worker header); its index. */
function killServingWorker(headers: Headers): number {
  const victim = cluster.workers.findIndex((w) => w.url === headers.get('x-autoglm-worker'));
  cluster.workers[victim]!.kill('SIGKILL');
  return victim;
}

/** Waits for a killed worker to exit, starts it again and waits until both workers are healthy. */
async function restartKilled(victim: number): Promise<void> {
  await cluster.workers[victim]!.exited;
  cluster.restart(victim);
  await waitFor(() => cluster.healthyUrls().length === 2, 90_000, 'restarted worker back');
}

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

  test('input the gateway cannot forward as it came gets the 400 a worker gives, not a silently changed request', async () => {
    const before = await metric('autoglm:gateway_retries_total');
    const raw = async (path: string, body: string): Promise<{ status: number; error: Record<string, unknown> }> => {
      const r = await fetch(`${cluster.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body });
      return { status: r.status, error: ((await r.json()) as { error: Record<string, unknown> }).error };
    };
    const base = `"model":"${MODEL}","prompt":"Hi","max_tokens":2`;
    // 1e309 parses to Infinity and was re-serialised as null: the default temperature, no seed
    for (const [field, param] of [
      ['"temperature":1e309', 'temperature'],
      ['"seed":-1e309', 'seed'],
      ['"prompt":[1,2,1e999]', 'prompt.2'],
    ] as const) {
      const r = await raw('/v1/completions', `{${base},${field}}`);
      expect([r.status, r.error.code, r.error.param]).toEqual([400, 'invalid_request', param]);
    }
    // a seed that is not a number was replaced by the gateway's own
    const seed = await call(cluster.url, '/v1/completions', { model: MODEL, prompt: 'Hi', max_tokens: 2, seed: '42' }, auth);
    expect([seed.status, seed.error]).toEqual([400, expect.objectContaining({ code: 'invalid_request', param: 'seed' })]);
    // a resumable stream's upstream rewrite hid these
    for (const [extra, param] of [
      [{ stream_options: 'x' }, 'stream_options'],
      [{ stream_options: { include_usage: 'yes' } }, 'stream_options.include_usage'],
      [{ return_token_ids: 'yes' }, 'return_token_ids'],
    ] as const) {
      const r = await call(cluster.url, '/v1/completions', { model: MODEL, prompt: 'Hi', max_tokens: 2, stream: true, ...extra }, auth);
      expect([r.status, r.error]).toEqual([400, expect.objectContaining({ code: 'invalid_request', param })]);
    }
    // nesting JSON.stringify cannot write again was a 500
    const deep = await raw('/v1/completions', `{${base},"extra":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    expect([deep.status, deep.error.code, deep.error.param]).toEqual([400, 'invalid_request', 'extra']);
    const deepTokenize = await raw('/tokenize', `{"prompt":"Hi","extra":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    expect([deepTokenize.status, deepTokenize.error.code]).toEqual([400, 'invalid_request']);
    // a body that outgrows the workers' limit once written again (the seed the gateway adds)
    // is the client's 413: a worker would refuse it mid-write, and the gateway took that for
    // a dead worker and ejected it
    const limit = 4 * 1024 * 1024;
    const nearLimit = `{${base},"user":"${'x'.repeat(limit - base.length - 20)}"}`;
    expect(Buffer.byteLength(nearLimit)).toBeLessThanOrEqual(limit);
    const grown = await raw('/v1/completions', nearLimit);
    expect([grown.status, grown.error.code]).toEqual([413, 'request_too_large']);
    const invalidUtf8 = Buffer.concat([Buffer.from(`{${base},"user":"`), Buffer.alloc(2 * 1024 * 1024, 0xff), Buffer.from('"}')]);
    const expanded = await fetch(`${cluster.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: invalidUtf8,
    });
    // invalid UTF-8 (whose bytes, decoded loosely, became 3-byte U+FFFD and outgrew the
    // limit) is refused as it arrives
    expect([expanded.status, ((await expanded.json()) as { error: { code: string } }).error.code]).toEqual([400, 'invalid_json']);
    // a URL that does not decode: the OpenAI shape, not fastify's
    const badUrl = await fetch(`${cluster.url}/v1/%zz`, { headers: auth });
    expect([badUrl.status, await badUrl.json()]).toEqual([
      400,
      { error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_request' } },
    ]);
    // all of it the client's: nothing retried, every worker still healthy
    expect(await metric('autoglm:gateway_retries_total')).toBe(before);
    expect(cluster.healthyUrls()).toHaveLength(2);
  });

  test('models, tokenize and metrics are served through the gateway', async () => {
    const models = (await (await fetch(`${cluster.url}/v1/models`, { headers: auth })).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toContain(MODEL);
    const post = async (base: string, path: string, body: object, headers: Record<string, string>): Promise<Response> =>
      fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    const prompt = 'Once upon a time, a dog';
    const viaGateway = await post(cluster.url, '/tokenize', { model: MODEL, prompt }, auth);
    expect(viaGateway.status).toBe(200);
    const tokenized = (await viaGateway.json()) as { tokens: number[]; count: number; max_model_len: number };
    // The same answer as a worker's own, and the ids spell the prompt again.
    const direct = await post(
      cluster.workers[0]!.url,
      '/tokenize',
      { model: MODEL, prompt },
      { 'x-autoglm-cluster-secret': CLUSTER_SECRET },
    );
    expect(tokenized).toEqual(await direct.json());
    expect(tokenized.count).toBe(tokenized.tokens.length);
    expect(tokenized.count).toBeGreaterThan(1);
    const detokenized = (await (await post(cluster.url, '/detokenize', { model: MODEL, tokens: tokenized.tokens }, auth)).json()) as {
      prompt: string;
    };
    expect(detokenized.prompt).toContain(prompt);
    expect((await post(cluster.url, '/tokenize', { model: MODEL, prompt }, {})).status).toBe(401);
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
    let lastTextAt = 0;
    const startedAt = performance.now();
    const got = await call(
      cluster.url,
      '/v1/chat/completions',
      { ...body, stream: true, stream_options: { include_usage: true } },
      auth,
      (text, headers) => {
        lastTextAt = performance.now();
        if (fired || text.length < 3) return;
        fired = true;
        victim = killServingWorker(headers);
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
    // usage.timings describe the client's whole stream (from the gateway's arrival), not
    // only the part the last worker generated after the resume
    // the client's view of the same span: its request to the last text it read
    const wallMs = lastTextAt - startedAt;
    const timings = (got.usage as { timings?: { time_to_first_token_ms: number; time_per_output_token_ms: number; e2e_ms: number } })
      .timings!;
    // the resumed worker saw only what came after the kill; the client's stream began before it
    expect(timings.e2e_ms).toBeGreaterThan(wallMs - (killedAt - startedAt));
    expect(timings.e2e_ms).toBeLessThanOrEqual(performance.now() - startedAt);
    expect(timings.time_to_first_token_ms).toBeGreaterThan(0);
    expect(timings.time_to_first_token_ms).toBeLessThan(killedAt - startedAt);
    const n = got.usage!.completion_tokens;
    expect(timings.time_to_first_token_ms + (n - 1) * timings.time_per_output_token_ms).toBeCloseTo(timings.e2e_ms, 3);
    expect(got.roleChunks).toBe(1);
    expect(got.ids.size).toBe(1);
    expect(await metric('autoglm:gateway_failovers_total{outcome="resumed"}')).toBe(resumedBefore + 1);
    await restartKilled(victim);
  });

  test('an echoed completion cut mid-way is resumed without a second copy of the prompt', async () => {
    const prompt = 'Once upon a time, there was a dog.';
    const body = { model: MODEL, prompt, echo: true, max_tokens: 200, ignore_eos: true, temperature: 0.9, seed: 77 };
    const reference = await call(cluster.workers[0]!.url, '/v1/completions', body, { 'x-autoglm-cluster-secret': CLUSTER_SECRET });
    expect(reference.status).toBe(200);
    expect(reference.text.startsWith(prompt)).toBe(true);
    const resumedBefore = await metric('autoglm:gateway_failovers_total{outcome="resumed"}');
    let victim = -1;
    const got = await call(
      cluster.url,
      '/v1/completions',
      { ...body, stream: true, stream_options: { include_usage: true } },
      auth,
      (text, headers) => {
        if (victim >= 0 || text.length < prompt.length + 3) return;
        victim = killServingWorker(headers);
      },
    );
    expect(victim).toBeGreaterThanOrEqual(0);
    expect(got.error).toBeNull();
    expect(got.text).toBe(reference.text);
    expect(got.usage).toMatchObject({ completion_tokens: 200, prompt_tokens: reference.usage!.prompt_tokens });
    expect(await metric('autoglm:gateway_failovers_total{outcome="resumed"}')).toBe(resumedBefore + 1);
    await restartKilled(victim);
  });

  test('per-key rate limits: a key over its own limit gets 429 in the OpenAI shape while another key, with a larger limit, keeps working', async () => {
    // A second gateway in front of the same real workers, with three keys: two with limits
    // of their own (bursts 2 and 4) and one on the default (burst 1). The refill (0.01/s) is
    // too slow to matter during the test, however slow the machine.
    const g = await buildGateway({
      registry: new StaticRegistry(cluster.workers.map((w) => w.url)),
      auth: { apiKeys: ['k-small', 'k-large', 'k-default'] },
      clusterSecret: CLUSTER_SECRET,
      rateLimit: { requestsPerSecond: 0.01, burst: 1 },
      keyRateLimits: new Map([
        ['k-small', { requestsPerSecond: 0.01, burst: 2 }],
        ['k-large', { requestsPerSecond: 0.01, burst: 4 }],
      ]),
    });
    const url = await g.listen({ port: 0, host: '127.0.0.1' });
    try {
      await waitFor(() => g.health.healthy().length === 2, 5000, 'workers healthy in the second gateway');
      const body = { model: MODEL, prompt: 'The cat', max_tokens: 2, temperature: 0 };
      const as = (key: string) => call(url, '/v1/completions', body, { authorization: `Bearer ${key}` });
      expect([(await as('k-small')).status, (await as('k-small')).status]).toEqual([200, 200]);
      const limited = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer k-small', 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await limited.json()).toEqual({
        error: { message: expect.stringMatching(/Rate limit/), type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' },
      });
      // The other key is untouched by that: its four requests are answered by a worker.
      for (let i = 0; i < 4; i++) {
        const r = await as('k-large');
        expect([r.status, r.error, r.usage?.completion_tokens]).toEqual([200, null, 2]);
      }
      expect((await as('k-large')).status).toBe(429);
      expect((await as('k-small')).status).toBe(429);
      // A key without a limit of its own gets the default.
      expect([(await as('k-default')).status, (await as('k-default')).status]).toEqual([200, 429]);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toContain('autoglm:gateway_requests_total{route="/v1/completions",status="429"} 4');
      expect(metrics).toContain('autoglm:gateway_requests_total{route="/v1/completions",status="200"} 7');
    } finally {
      await g.close();
    }
  });

  test('a per-key limit for a key that is not an API key is refused at start', async () => {
    await expect(
      buildGateway({
        registry: new StaticRegistry([]),
        auth: { apiKeys: ['a'] },
        keyRateLimits: new Map([['b', { requestsPerSecond: 1, burst: 1 }]]),
      }),
    ).rejects.toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/not in auth.apiKeys/) });
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

  test("a worker refusing the gateway's own credentials is the gateway's 502, not the client's 401", async () => {
    const g = await buildGateway({
      registry: new StaticRegistry(cluster.workers.map((w) => w.url)),
      auth: { apiKeys: ['k'] },
      clusterSecret: 'not-the-workers-secret',
    });
    const url = await g.listen({ port: 0, host: '127.0.0.1' });
    try {
      await waitFor(() => g.health.healthy().length === 2, 5000, 'workers healthy in the misconfigured gateway');
      for (const stream of [false, true]) {
        const r = await call(url, '/v1/completions', { model: MODEL, prompt: 'x', max_tokens: 2, stream }, { authorization: 'Bearer k' });
        expect(r.status, r.text).toBe(502);
        expect(r.error).toMatchObject({ code: 'upstream_error', type: 'server_error' });
        expect((r.error as { message: string }).message).toMatch(/refused the gateway's credentials \(HTTP 401: .*cluster secret/);
      }
    } finally {
      await g.close();
    }
  });

  test('every gateway answer carries x-request-id: its own, or the one the client sent', async () => {
    const body = JSON.stringify({ model: MODEL, prompt: 'Hi', max_tokens: 2 });
    const post = (headers: Record<string, string>): Promise<Response> =>
      fetch(`${cluster.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    const ok = await post(auth);
    const refused = await post({});
    const models = await fetch(`${cluster.url}/v1/models`, { headers: auth });
    for (const r of [ok, refused, models]) expect(r.headers.get('x-request-id')).toMatch(/\S/);
    expect([ok.status, refused.status, models.status]).toEqual([200, 401, 200]);
    expect(ok.headers.get('x-request-id')).not.toBe(refused.headers.get('x-request-id'));
    expect((await post({ ...auth, 'x-request-id': 'client-trace-7' })).headers.get('x-request-id')).toBe('client-trace-7');
  });
});
