/**
 * vLLM's truncate_prompt_tokens on a real server (demo model, byte-level tokens): a prompt
 * longer than N keeps its last N tokens, so the answer is the one the truncated prompt gets,
 * usage counts N prompt tokens, echo returns the truncated text, and a chat keeps the end
 * of its rendered conversation.
 */
import { describe, expect, it } from 'vitest';
import { useDemoServer } from './helpers.js';
import { postJson } from './http.js';

const server = useDemoServer();

const LONG = 'Once upon a time, there was a little girl named Sue. She liked to play with her red ball. One day';

describe('truncate_prompt_tokens', () => {
  it('keeps the last N prompt tokens: the answer and usage are those of the truncated prompt', async () => {
    const { url, engine } = server();
    const ids = await engine.tokenize(LONG);
    const keep = 24;
    const ask = (body: object) => postJson(`${url}/v1/completions`, { model: 'demo-stories', max_tokens: 12, temperature: 0, ...body });
    const truncated = await ask({ prompt: LONG, truncate_prompt_tokens: keep });
    const direct = await ask({ prompt: ids.slice(ids.length - keep) });
    expect(truncated.status).toBe(200);
    expect((truncated.json.choices as { text: string }[])[0]!.text).toBe((direct.json.choices as { text: string }[])[0]!.text);
    expect((truncated.json.usage as { prompt_tokens: number }).prompt_tokens).toBe(keep);
    // a prompt already no longer than N is left as it is
    const whole = await ask({ prompt: LONG, truncate_prompt_tokens: ids.length + 5 });
    expect((whole.json.usage as { prompt_tokens: number }).prompt_tokens).toBe(ids.length);
  });

  it('echo returns the truncated prompt, and several prompts are each truncated', async () => {
    const { url } = server();
    const r = await postJson(`${url}/v1/completions`, {
      model: 'demo-stories',
      prompt: [LONG, 'Short one'],
      max_tokens: 0,
      echo: true,
      truncate_prompt_tokens: 10,
    });
    expect(r.status).toBe(200);
    const texts = (r.json.choices as { text: string }[]).map((c) => c.text);
    expect(texts).toEqual([LONG.slice(LONG.length - 10), 'Short one']);
  });

  it('in a chat keeps the end of the rendered conversation (its generation prompt included)', async () => {
    const { url } = server();
    const messages = [
      { role: 'user', content: 'Tell me a story about a cat and a dog who live on a farm near the sea.' },
      { role: 'assistant', content: 'Once upon a time there was a cat.' },
      { role: 'user', content: 'Tell me a story about Lily.' },
    ];
    const r = await postJson(`${url}/v1/chat/completions`, {
      model: 'demo-stories',
      messages,
      max_tokens: 8,
      temperature: 0,
      truncate_prompt_tokens: 40,
    });
    expect(r.status).toBe(200);
    expect((r.json.usage as { prompt_tokens: number }).prompt_tokens).toBe(40);
  });

  it('refuses N below 1 or not an integer with a 400 naming the field', async () => {
    const { url } = server();
    for (const n of [0, -1, 2.5, 'all']) {
      const r = await postJson(`${url}/v1/completions`, { model: 'demo-stories', prompt: 'Hi', max_tokens: 2, truncate_prompt_tokens: n });
      expect(r.status, String(n)).toBe(400);
      expect(JSON.stringify(r.json)).toContain('truncate_prompt_tokens');
    }
  });
});
