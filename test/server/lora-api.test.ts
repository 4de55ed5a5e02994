/**
 * LoRA adapters over HTTP (a real server on loopback, the demo model with a generated PEFT
 * adapter, the real GPU path): an adapter is a model of its own in /v1/models whose parent
 * is the base model; a request naming it runs with it (its answer names it too, and equals
 * the engine's in-process answer with that adapter); an unknown name is a 404 listing the
 * adapters.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelSpec } from '../../src/engine/model/config.js';
import { generateLoraAdapter } from '../../src/testing/generate-lora.js';
import { API_KEY, DEMO_MODEL_DIR, parseMetrics, postJson, readSse, useDemoServer, waitFor } from './helpers.js';

const ADAPTER = join(tmpdir(), `autoglm-lora-api-${process.pid}`);
beforeAll(async () => {
  await generateLoraAdapter(ADAPTER, await loadModelSpec(DEMO_MODEL_DIR), { rank: 8, seed: 3, bScale: 0.15 });
});
afterAll(() => rmSync(ADAPTER, { recursive: true, force: true }));
const server = useDemoServer({ loraAdapters: [{ name: 'tales', path: ADAPTER }] });

const PROMPT = 'Once upon a time, there was a little fox named';

describe('LoRA adapters over HTTP', () => {
  it('/v1/models lists the adapter as a model whose parent is the base model', async () => {
    const { url } = server();
    const r = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${API_KEY}` } }).then(
      (x) => x.json() as Promise<{ data: { id: string; parent?: string }[] }>,
    );
    expect(r.data.map((m) => [m.id, m.parent])).toEqual([
      ['demo-stories', undefined],
      ['tales', 'demo-stories'],
    ]);
  });

  it('model: the adapter name runs with it, names it in the answer and equals the in-process answer; the base model answers differently', async () => {
    const { url, engine } = server();
    const body = { prompt: PROMPT, max_tokens: 48, temperature: 0 };
    const tales = await postJson(`${url}/v1/completions`, { ...body, model: 'tales' });
    const base = await postJson(`${url}/v1/completions`, { ...body, model: 'demo-stories' });
    expect(tales.status).toBe(200);
    const json = tales.json as { model: string; choices: { text: string }[] };
    expect(json.model).toBe('tales');
    const inProcess = await engine.complete({ prompt: PROMPT, maxTokens: 48, sampling: { temperature: 0 }, lora: 'tales' });
    expect(json.choices[0]!.text).toBe(inProcess.text);
    expect(json.choices[0]!.text).not.toBe((base.json as typeof json).choices[0]!.text);
  });

  it('streamed chat with the adapter: every chunk names it, and the text equals the whole answer', async () => {
    const { url } = server();
    const body = { model: 'tales', messages: [{ role: 'user', content: 'Tell me a story about a fox.' }], max_tokens: 20, temperature: 0 };
    const whole = await postJson(`${url}/v1/chat/completions`, body);
    const models = new Set<string>();
    let text = '';
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ ...body, stream: true }),
    });
    await readSse(r, (data) => {
      if (data === '[DONE]') return;
      const e = JSON.parse(data) as { model: string; choices: { delta: { content?: string } }[] };
      models.add(e.model);
      text += e.choices[0]?.delta.content ?? '';
    });
    expect([...models]).toEqual(['tales']);
    expect(text).toBe((whole.json as { choices: { message: { content: string } }[] }).choices[0]!.message.content);
  });

  it("/metrics' lora_requests_info names the adapter while a request on it runs, and none once it is done", async () => {
    const { url } = server();
    const scrape = async (): Promise<string[]> => {
      const text = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } }).then((r) => r.text());
      return [...parseMetrics(text).keys()].filter((k) => k.startsWith('autoglm:lora_requests_info{'));
    };
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ model: 'tales', prompt: PROMPT, max_tokens: 200, ignore_eos: true, stream: true }),
    });
    // scraped once the stream is under way; the stream is read to its end
    let scraping: Promise<string[]> | undefined;
    await readSse(r, () => {
      scraping ??= scrape();
    });
    const during = await scraping!;
    expect(during).toEqual(['autoglm:lora_requests_info{running_lora_adapters="tales",waiting_lora_adapters="",max_lora="1"}']);
    await waitFor(async () => (await scrape())[0]?.includes('running_lora_adapters=""') === true, 10_000, 'the request to end');
  });

  it('an unknown model is a 404 model_not_found that lists the adapters', async () => {
    const { url } = server();
    const r = await postJson(`${url}/v1/completions`, { model: 'tales-v2', prompt: 'Hi', max_tokens: 2 });
    expect(r.status).toBe(404);
    const error = (r.json as { error: { code: string; message: string; param: string } }).error;
    expect([error.code, error.param]).toEqual(['model_not_found', 'model']);
    expect(error.message).toContain('tales');
  });
});
