import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { UpstreamPool } from '../../src/cluster/gateway/upstream-http.js';

/** A loopback HTTP server that counts connections and requests per connection. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse, nthOnSocket: number) => void): Promise<{
  url: string;
  server: Server;
  connections: () => number;
}> {
  const perSocket = new WeakMap<Socket, number>();
  let connections = 0;
  const server = createServer((req, res) => {
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    handler(req, res, n);
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, server, connections: () => connections };
}

function sse(res: ServerResponse, frames: string[]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const f of frames) res.write(`data: ${f}\n\n`);
  res.end('data: [DONE]\n\n');
}

describe('UpstreamPool (gateway -> worker connections)', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });

  it('reuses one keep-alive connection for sequential streamed requests read to the end', async () => {
    const s = await serve((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => sse(res, [body, '{"n":2}']));
    });
    const pool = new UpstreamPool();
    cleanups.push(
      () => pool.close(),
      () => s.server.close(),
    );
    for (let i = 0; i < 5; i++) {
      const r = await pool.request(`${s.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"i":${i}}`,
      }).response;
      expect(r.status).toBe(200);
      expect(await r.text()).toBe(`data: {"i":${i}}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n`);
    }
    expect(s.connections()).toBe(1);
  });

  it('sends a request again on a fresh connection when the reused one was already dead', async () => {
    // The worker drops every connection on its second request: what a keep-alive socket
    // closed by the worker at the moment of reuse looks like.
    const s = await serve((_req, res, n) => {
      if (n >= 2) res.socket?.destroy();
      else sse(res, ['{}']);
    });
    const pool = new UpstreamPool();
    cleanups.push(
      () => pool.close(),
      () => s.server.close(),
    );
    for (let i = 0; i < 3; i++) {
      const r = await pool.request(`${s.url}/x`, { method: 'GET', headers: {} }).response;
      expect(await r.text()).toContain('[DONE]');
    }
    expect(s.connections()).toBe(3);
  });

  it('cancel() cuts a body being read, and an unreachable worker rejects with its connect error', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {}\n\n'); // and never ends
    });
    const pool = new UpstreamPool();
    cleanups.push(
      () => pool.close(),
      () => s.server.closeAllConnections(),
      () => s.server.close(),
    );
    const call = pool.request(`${s.url}/x`, { method: 'GET', headers: {} });
    const r = await call.response;
    const read = (async () => {
      for await (const chunk of r.body) {
        expect(chunk.toString()).toBe('data: {}\n\n');
        call.cancel();
      }
    })();
    await expect(read).rejects.toThrow();

    const closed = await serve(() => undefined);
    closed.server.close();
    await new Promise((r2) => setTimeout(r2, 50));
    await expect(pool.request(`${closed.url}/ready`, { method: 'GET', headers: {} }).response).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
  });
});
