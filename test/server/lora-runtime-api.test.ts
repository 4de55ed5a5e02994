/**
 * vLLM's run-time LoRA endpoints on a real server on loopback (demo model, 2 adapter slots,
 * real GPU path): absent unless allowed; load, serve, refuse a second load of the name,
 * unload, and the 4xx answers for bad bodies and folders.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelSpec } from '../../src/engine/model/config.js';
import { generateLoraAdapter } from '../../src/testing/generate-lora.js';
import { API_KEY, DEMO_MODEL_DIR, postJson, startServer, useDemoServer } from './helpers.js';

const ADAPTER = join(tmpdir(), `autoglm-lora-runtime-api-${process.pid}`);
beforeAll(async () => {
  await generateLoraAdapter(ADAPTER, await loadModelSpec(DEMO_MODEL_DIR), { rank: 8, seed: 5, bScale: 0.15 });
});
afterAll(() => rmSync(ADAPTER, { recursive: true, force: true }));
const server = useDemoServer({ maxLoras: 2 }, { allowRuntimeLoraUpdates: true });

const post = async (url: string, body: unknown): Promise<{ status: number; text: string }> => {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify(body),
  });
  return { status: r.status, text: await r.text() };
};

describe('POST /v1/load_lora_adapter and /v1/unload_lora_adapter', () => {
  it('are not served unless allowed', async () => {
    const { engine } = server();
    const plain = await startServer({ engine });
    try {
      expect((await post(`${plain.url}/v1/load_lora_adapter`, { lora_name: 'x', lora_path: ADAPTER })).status).toBe(404);
    } finally {
      await plain.close();
    }
  });

  it('load, serve with it, refuse the name twice, unload: then it is model_not_found again', async () => {
    const { url } = server();
    const completion = { model: 'fox', prompt: 'Once upon a time, there was a little fox named', max_tokens: 24, temperature: 0 };
    expect((await postJson(`${url}/v1/completions`, completion)).status).toBe(404);
    const loaded = await post(`${url}/v1/load_lora_adapter`, { lora_name: 'fox', lora_path: ADAPTER });
    expect(loaded).toEqual({ status: 200, text: "Success: LoRA adapter 'fox' added successfully." });
    const models = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${API_KEY}` } }).then(
      (r) => r.json() as Promise<{ data: { id: string }[] }>,
    );
    expect(models.data.map((m) => m.id)).toEqual(['demo-stories', 'fox']);
    const answer = await postJson(`${url}/v1/completions`, completion);
    expect([answer.status, answer.json.model]).toEqual([200, 'fox']);
    const again = await post(`${url}/v1/load_lora_adapter`, { lora_name: 'fox', lora_path: ADAPTER });
    expect(again.status).toBe(400);
    expect(again.text).toContain('already loaded');
    expect(await post(`${url}/v1/unload_lora_adapter`, { lora_name: 'fox' })).toEqual({
      status: 200,
      text: "Success: LoRA adapter 'fox' removed successfully.",
    });
    expect((await postJson(`${url}/v1/completions`, completion)).status).toBe(404);
    const twice = await post(`${url}/v1/unload_lora_adapter`, { lora_name: 'fox' });
    expect([twice.status, (JSON.parse(twice.text) as { error: { code: string } }).error.code]).toEqual([404, 'model_not_found']);
  });

  it("/ready tells the adapters to anyone and their folders only to a caller with the routes' credentials", async () => {
    const { url } = server();
    type Ready = { instance: string; adapters: string[]; runtime_adapters?: Record<string, string> };
    const ready = async (headers: Record<string, string>): Promise<Ready> =>
      (await fetch(`${url}/ready`, { headers })).json() as Promise<Ready>;
    const before = await ready({});
    expect(before.adapters).toEqual([]);
    expect(before.instance).toMatch(/^[0-9a-f]{16}$/);
    expect((await post(`${url}/v1/load_lora_adapter`, { lora_name: 'owl', lora_path: ADAPTER })).status).toBe(200);
    try {
      const anonymous = await ready({});
      expect(anonymous.adapters).toEqual(['owl']);
      expect(anonymous.runtime_adapters).toBeUndefined();
      expect((await ready({ authorization: 'Bearer wrong' })).runtime_adapters).toBeUndefined();
      const trusted = await ready({ authorization: `Bearer ${API_KEY}` });
      expect(trusted.runtime_adapters).toEqual({ owl: ADAPTER });
      // one process, one instance id: a gateway tells a restart by a new one
      expect(trusted.instance).toBe(before.instance);
    } finally {
      await post(`${url}/v1/unload_lora_adapter`, { lora_name: 'owl' });
    }
    expect((await ready({ authorization: `Bearer ${API_KEY}` })).runtime_adapters).toEqual({});
  });

  it('answers 400 naming the field for a missing name or path and for a folder that is no adapter', async () => {
    const { url } = server();
    for (const [body, param] of [
      [{ lora_path: ADAPTER }, 'lora_name'],
      [{ lora_name: 'a' }, 'lora_path'],
      [{ lora_name: 'a', lora_path: join(ADAPTER, 'nowhere') }, 'lora_path'],
      [{ lora_name: 'a b', lora_path: ADAPTER }, 'lora_name'],
    ] as const) {
      const r = await post(`${url}/v1/load_lora_adapter`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect((JSON.parse(r.text) as { error: { param: string } }).error.param).toBe(param);
    }
  });
});
