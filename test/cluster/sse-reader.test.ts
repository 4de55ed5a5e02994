import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { readSseBatches } from '../../src/cluster/gateway/sse-reader.js';

/** A loopback server whose handler writes the response by hand; returns one GET's response. */
async function respond(handler: (res: ServerResponse) => void): Promise<{ res: IncomingMessage; server: Server }> {
  const server = createServer((_req, res) => {
    res.socket?.setNoDelay(true);
    handler(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/' }, resolve);
    req.on('error', reject);
    req.end();
  });
  return { res, server };
}

const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('readSseBatches (the relay reading a worker stream)', () => {
  const servers: Server[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      s.close();
    }
  });

  it('gives one batch per network read, joining frames and UTF-8 characters split across reads', async () => {
    const euro = Buffer.from('€', 'utf8');
    const { res, server } = await respond(async (r) => {
      r.writeHead(200, { 'content-type': 'text/event-stream' });
      r.write('data: {"a":1}\n\ndata: {"b"');
      await tick();
      r.write(Buffer.concat([Buffer.from(':"x'), euro.subarray(0, 1)]));
      await tick();
      r.write(Buffer.concat([euro.subarray(1), Buffer.from('"}\n\nevent: x\ndata: line1\ndata: line2\n\n')]));
      await tick();
      r.end('data: [DONE]\n\n');
    });
    servers.push(server);
    const batches: string[][] = [];
    await readSseBatches(res, (batch) => void batches.push(batch));
    expect(batches.filter((b) => b.length > 0)).toEqual([['{"a":1}'], ['{"b":"x€"}', 'line1\nline2'], ['[DONE]']]);
  });

  it("stops reading when the handler says 'stop'", async () => {
    const { res, server } = await respond((r) => {
      r.writeHead(200, { 'content-type': 'text/event-stream' });
      r.write('data: 1\n\n');
      // never ends: only 'stop' can settle the read
    });
    servers.push(server);
    let calls = 0;
    await readSseBatches(res, () => {
      calls++;
      return 'stop';
    });
    expect(calls).toBe(1);
    res.destroy();
  });

  it('rejects when the connection is cut before the body ends', async () => {
    const { res, server } = await respond((r) => {
      r.writeHead(200, { 'content-type': 'text/event-stream' });
      r.write('data: 1\n\n');
      setTimeout(() => r.socket?.destroy(), 30);
    });
    servers.push(server);
    const seen: string[] = [];
    await expect(readSseBatches(res, (batch) => void seen.push(...batch))).rejects.toThrow();
    expect(seen).toEqual(['1']);
  });

  it('pauses the body while a returned promise is pending, then reads on', async () => {
    const { res, server } = await respond(async (r) => {
      r.writeHead(200, { 'content-type': 'text/event-stream' });
      r.write('data: 1\n\n');
      await tick();
      r.end('data: 2\n\n');
    });
    servers.push(server);
    const seen: string[] = [];
    let release!: () => void;
    const read = readSseBatches(res, (batch) => {
      seen.push(...batch);
      if (batch[0] === '1') return new Promise<void>((r) => (release = r));
      return undefined;
    });
    await tick(100);
    expect(seen).toEqual(['1']);
    expect(res.isPaused()).toBe(true);
    release();
    await read;
    expect(seen).toEqual(['1', '2']);
  });
});
