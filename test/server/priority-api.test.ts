/**
 * vLLM's `priority` request field on a real server on loopback (demo model, real GPU path):
 * with --scheduling-policy priority and one sequence at a time, requests queued behind a
 * running one are served lowest value first; under the default fcfs policy a priority other
 * than 0 is a 400 naming the field, rather than silently ignored.
 */
import { describe, expect, it } from 'vitest';
import { API_KEY } from './constants.js';
import { loadDemoEngine, startServer, useDemoServer } from './helpers.js';
import { postJson, readSse } from './http.js';

const server = useDemoServer({ schedulingPolicy: 'priority', maxBatchSequences: 1 });

describe('priority (--scheduling-policy priority)', () => {
  it('serves requests waiting behind a running one by priority, lowest first, whatever their arrival order', async () => {
    const { url } = server();
    const long = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({
        model: 'demo-stories',
        prompt: 'Once upon a time',
        max_tokens: 150,
        ignore_eos: true,
        stream: true,
        priority: 0,
      }),
    });
    const done: string[] = [];
    let queued: Promise<unknown>[] = [];
    // once the long request streams (it holds the only batch slot), two more queue behind it
    await readSse(long, () => {
      if (queued.length > 0) return;
      queued = (
        [
          ['later', 5],
          ['sooner', -5],
        ] as const
      ).map(([name, priority]) =>
        postJson(`${url}/v1/completions`, { model: 'demo-stories', prompt: `A story about ${name}`, max_tokens: 4, priority }).then((r) => {
          expect(r.status).toBe(200);
          done.push(name);
        }),
      );
    });
    await Promise.all(queued);
    expect(done).toEqual(['sooner', 'later']);
  });

  it('takes priority on chat too, and refuses one that is not an integer', async () => {
    const { url } = server();
    const chat = await postJson(`${url}/v1/chat/completions`, {
      model: 'demo-stories',
      messages: [{ role: 'user', content: 'Tell me a story.' }],
      max_tokens: 3,
      priority: -1,
    });
    expect(chat.status).toBe(200);
    for (const priority of [1.5, 'high', 2 ** 40]) {
      const r = await postJson(`${url}/v1/completions`, { model: 'demo-stories', prompt: 'Hi', max_tokens: 2, priority });
      expect(r.status, String(priority)).toBe(400);
      expect(JSON.stringify(r.json)).toContain('priority');
    }
  });

  it('under the default fcfs policy refuses a priority other than 0 with a 400 naming it, and takes 0', async () => {
    const engine = await loadDemoEngine();
    const running = await startServer({ engine });
    try {
      const refused = await postJson(`${running.url}/v1/completions`, { model: 'demo-stories', prompt: 'Hi', max_tokens: 2, priority: 3 });
      expect(refused.status).toBe(400);
      const error = refused.json.error as { param?: string; message: string };
      expect(error.param).toBe('priority');
      expect(error.message).toMatch(/scheduling-policy priority/);
      const zero = await postJson(`${running.url}/v1/completions`, { model: 'demo-stories', prompt: 'Hi', max_tokens: 2, priority: 0 });
      expect(zero.status).toBe(200);
    } finally {
      await running.close();
      await engine.close();
    }
  });
});
