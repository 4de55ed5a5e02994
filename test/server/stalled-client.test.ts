/**
 * A streaming client that never reads its answer: once its socket buffers are full the
 * server's writes wait for ever, so without a bound it held its request slot (and a drain,
 * and the process's exit on SIGTERM) until it hung up.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { InferenceEngine } from '../../src/engine/types.js';
import { API_KEY, STORY_PROMPT, loadDemoEngine, startServer, waitFor } from './helpers.js';

let engine: InferenceEngine;
const sockets: Socket[] = [];

beforeAll(async () => {
  engine = await loadDemoEngine({ responseCacheEntries: 0 });
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await engine?.close();
});

/**
 * Opens a stream whose answer is megabytes (16 choices with 20 top logprobs per token) on a
 * raw socket that is never read, so the server's writes soon wait on the client.
 */
function nonReadingStream(baseUrl: string): Socket {
  const { hostname, port } = new URL(baseUrl);
  const body = JSON.stringify({
    model: 'demo-stories',
    messages: STORY_PROMPT,
    max_tokens: 300,
    ignore_eos: true,
    n: 16,
    logprobs: true,
    top_logprobs: 20,
    stream: true,
    temperature: 1,
  });
  const socket = connect(Number(port), hostname, () => {
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\n` +
        `authorization: Bearer ${API_KEY}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    socket.pause();
  });
  socket.on('error', () => undefined);
  sockets.push(socket);
  return socket;
}

test('a client that takes nothing for streamStallTimeoutMs is cut off, and its slot and KV blocks are freed', async () => {
  const running = await startServer({ engine, limits: { streamStallTimeoutMs: 300 } });
  try {
    nonReadingStream(running.url);
    await waitFor(() => running.server.lifecycle.pending === 1, 10_000, 'the stream admitted');
    // 16 x 300 tokens of ~1.5 KB events is far more than the socket buffers hold
    await waitFor(() => running.server.lifecycle.pending === 0, 30_000, 'the stalled stream released');
    await waitFor(() => engine.stats().running === 0 && engine.stats().kvBlocksUsed === 0, 10_000, 'KV blocks freed');
  } finally {
    await running.close();
  }
});

test('a drain that runs out of time cuts a client that is not reading, so the server can close', async () => {
  // the stall bound is out of the way: only the drain can end this one
  const running = await startServer({ engine, limits: { streamStallTimeoutMs: 3_600_000 } });
  let closed = false;
  try {
    const before = engine.stats().generationTokens;
    nonReadingStream(running.url);
    await waitFor(() => running.server.lifecycle.pending === 1, 10_000, 'the stream admitted');
    // let the server's writes fill the socket buffers and wait on the client
    await waitFor(() => engine.stats().generationTokens - before > 16 * 200, 30_000, 'most of the answer generated');
    expect(await running.server.drain(200)).toBe(1);
    expect(running.server.lifecycle.pending).toBe(0);
  } finally {
    void running.close().then(() => (closed = true));
  }
  await waitFor(() => closed, 10_000, 'close() after the drain');
});
