import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { buildGateway, type Gateway } from '../../src/cluster/gateway/build-gateway.js';
import { parseGatewayConfig } from '../../src/cluster/gateway/config.js';
import type { GatewayOptions } from '../../src/cluster/gateway/options.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import { call } from './support/client.js';
import { waitFor } from './support/processes.js';
import { SseStub, tokenEvent, usageEvent } from './support/sse-stub.js';

// Gateway shutdown and clients that trickle their request (slowloris): close() used to wait
// for ever on a connection whose client had not finished its headers, and a client sending
// a body a byte at a time held its socket for ever (Fastify turns Node's request timeout off).
const TOKENS = 10;
let stub: SseStub;
/** Per-token delay of the stub's streams; a test sets it. */
let tokenDelayMs = 20;
const gateways: Gateway[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  stub = await new SseStub((_body, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const next = (): void => {
      if (res.destroyed) return;
      if (i === TOKENS) {
        res.write(usageEvent(1, TOKENS));
        return void res.end('data: [DONE]\n\n');
      }
      res.write(tokenEvent(100 + i, `t${i}`, i === TOKENS - 1 ? 'length' : null));
      i++;
      setTimeout(next, tokenDelayMs);
    };
    next();
  }).start();
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const g of gateways) await g.close();
  await stub?.stop();
});

async function gateway(options: Partial<GatewayOptions> = {}): Promise<{ g: Gateway; url: string; port: number }> {
  const g = await buildGateway({
    registry: new StaticRegistry([stub.url]),
    auth: { apiKeys: [], disabled: true },
    health: { probeIntervalMs: 100 },
    ...options,
  });
  gateways.push(g);
  const url = await g.listen({ port: 0, host: '127.0.0.1' });
  await waitFor(() => g.health.healthy().length === 1, 5000, 'stub healthy');
  return { g, url, port: Number(new URL(url).port) };
}

/** A raw client that sends `head` and then nothing; resolves its close time (ms after the start) via `closedMs`. */
function trickle(port: number, head: string): { socket: Socket; closed: Promise<number> } {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  socket.on('error', () => undefined);
  socket.resume(); // an unread socket never emits 'close'
  const t0 = performance.now();
  const closed = new Promise<number>((r) => socket.once('close', () => r(performance.now() - t0)));
  socket.write(head);
  return { socket, closed };
}

const bounded = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms))]);

test('close() returns at once while a client is still sending its request headers', async () => {
  const { g, port } = await gateway();
  const client = trickle(port, 'POST /v1/completions HTTP/1.1\r\nhost: x\r\n');
  await new Promise((r) => setTimeout(r, 200));
  const t0 = performance.now();
  await bounded(g.close(), 3000, 'close()');
  expect(performance.now() - t0).toBeLessThan(1000);
  await bounded(client.closed, 1000, 'the half-sent connection closing');
});

test('a client trickling its request body is disconnected after clientRequestTimeoutMs', async () => {
  const { url, port } = await gateway({ clientRequestTimeoutMs: 400 });
  const client = trickle(
    port,
    'POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":',
  );
  // Node checks at half the timeout: closed between 400 and about 600 ms (plus scheduling).
  const closedMs = await bounded(client.closed, 3000, 'the trickling client being disconnected');
  expect(closedMs).toBeGreaterThanOrEqual(350);
  // Streams that take longer than the request timeout are not cut by it.
  tokenDelayMs = 80;
  const r = await call(url, '/v1/completions', { model: 'm', prompt: 'hi', max_tokens: TOKENS, stream: true });
  expect([r.status, r.error, r.finishReason]).toEqual([200, null, 'length']);
  expect(r.text).toBe(Array.from({ length: TOKENS }, (_, i) => `t${i}`).join(''));
});

test('close() lets a stream in flight finish, and cuts one that outlives closeTimeoutMs', async () => {
  tokenDelayMs = 50;
  const a = await gateway();
  const finishing = call(a.url, '/v1/completions', { model: 'm', prompt: 'hi', max_tokens: TOKENS, stream: true });
  await waitFor(() => stub.bodies.length > 0 && a.g.balancer.outstanding(stub.url).requests === 1, 3000, 'stream in flight');
  await bounded(a.g.close(), 5000, 'close() with a stream in flight');
  const r = await finishing;
  expect([r.status, r.error, r.finishReason]).toEqual([200, null, 'length']);

  tokenDelayMs = 2000;
  const b = await gateway({ closeTimeoutMs: 300 });
  const cut = call(b.url, '/v1/completions', { model: 'm', prompt: 'hi', max_tokens: TOKENS, stream: true });
  await waitFor(() => b.g.balancer.outstanding(stub.url).requests === 1, 3000, 'stream in flight');
  const t0 = performance.now();
  await bounded(b.g.close(), 3000, 'close() with a stalled stream');
  expect(performance.now() - t0).toBeLessThan(1500);
  expect((await cut).error).not.toBeNull();
});

test('the CLI flags (and AUTOGLM_* env) set the client request and shutdown timeouts', () => {
  const c = parseGatewayConfig(['--client-request-timeout-ms', '5000'], { AUTOGLM_SHUTDOWN_TIMEOUT_MS: '7000' });
  if (c === 'help') throw new Error('help');
  expect([c.options.clientRequestTimeoutMs, c.options.closeTimeoutMs]).toEqual([5000, 7000]);
});
