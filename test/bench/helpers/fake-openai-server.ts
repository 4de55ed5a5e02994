/**
 * A tiny OpenAI-style streaming server on loopback for testing the load generator itself:
 * it streams `max_tokens` completion chunks with fixed delays, reports usage, and
 * misbehaves on request (429s, slow first tokens) by markers in the prompt.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeServerOptions {
  ttftMs: number;
  itlMs: number;
  /** Requests whose prompt contains 'SLOW' wait this long before the first token. */
  slowTtftMs?: number;
}

export interface FakeServer {
  url: string;
  /** Most requests in flight at once. */
  peakInFlight: number;
  received: { prompt: unknown; maxTokens: number; ignoreEos: boolean; atMs: number }[];
  close(): Promise<void>;
}

export async function startFakeServer(options: FakeServerOptions): Promise<FakeServer> {
  let inFlight = 0;
  const state: Omit<FakeServer, 'url' | 'close'> = { peakInFlight: 0, received: [] };
  const t0 = performance.now();
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'fake-model', object: 'model' }] }));
      return;
    }
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as { prompt?: unknown; messages?: { content: string }[]; max_tokens: number; ignore_eos?: boolean };
      const prompt = body.prompt ?? body.messages?.[0]?.content;
      state.received.push({ prompt, maxTokens: body.max_tokens, ignoreEos: body.ignore_eos === true, atMs: performance.now() - t0 });
      const text = typeof prompt === 'string' ? prompt : '';
      if (text.includes('REJECT')) {
        res.writeHead(429, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' } }));
        return;
      }
      inFlight++;
      state.peakInFlight = Math.max(state.peakInFlight, inFlight);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const promptTokens = Array.isArray(prompt) ? prompt.length : text.trim().split(/\s+/).length;
      let sent = 0;
      const chat = body.messages !== undefined;
      const emit = () => {
        if (sent < body.max_tokens) {
          const choice = chat ? { index: 0, delta: { content: ` w${sent}` } } : { index: 0, text: ` w${sent}` };
          res.write(`data: ${JSON.stringify({ id: 'x', choices: [choice] })}\n\n`);
          sent++;
          setTimeout(emit, options.itlMs);
          return;
        }
        res.write(`data: ${JSON.stringify({ id: 'x', choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: sent } })}\n\n`);
        res.end('data: [DONE]\n\n');
        inFlight--;
      };
      setTimeout(emit, text.includes('SLOW') ? (options.slowTtftMs ?? options.ttftMs) : options.ttftMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }) as FakeServer;
}
