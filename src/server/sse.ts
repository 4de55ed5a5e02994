import type { Writable } from 'node:stream';
import type { FastifyReply } from 'fastify';

/** Response headers of an OpenAI-style event stream (worker and gateway alike). */
export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  // no connection header: Node sends keep-alive itself, and close when the client asked to
  // proxies such as nginx must not buffer token events
  'x-accel-buffering': 'no',
} as const;

/** When a write the client is not taking is given up on: the socket is destroyed, which cancels the request. */
export interface WriteLimits {
  /** The client took nothing for this long (its socket buffers stayed full), ms. */
  stallMs?: number;
  /** The request was aborted (a drain ran out of time): waiting for the client is over too. */
  signal?: AbortSignal;
}

/**
 * Writes `chunk`; returns nothing when the socket takes more at once (no promise per write),
 * else a promise that settles at 'drain' or 'close', so a slow client holds back only its
 * own stream. A client that stops reading altogether would hold its request (and a drain,
 * and the process's exit) for ever: after `limits.stallMs`, or once `limits.signal` aborts,
 * the socket is destroyed instead. Worker and gateway streams both write through this.
 */
export function writeWithBackpressure(raw: Writable, chunk: string, limits: WriteLimits = {}): Promise<void> | undefined {
  if (raw.write(chunk)) return undefined;
  return new Promise<void>((resolve) => {
    const { stallMs, signal } = limits;
    const giveUp = (): void => {
      raw.destroy();
      done();
    };
    const timer = stallMs === undefined ? undefined : setTimeout(giveUp, stallMs);
    const done = (): void => {
      clearTimeout(timer);
      raw.off('drain', done);
      raw.off('close', done);
      signal?.removeEventListener('abort', giveUp);
      resolve();
    };
    raw.on('drain', done);
    raw.on('close', done);
    if (signal?.aborted) giveUp();
    else signal?.addEventListener('abort', giveUp, { once: true });
  });
}

/**
 * Server-Sent Events over a hijacked reply. Headers go out with the first event, so an
 * error before any token still gets a proper status code and JSON body (and a gateway
 * can retry it elsewhere). Writes wait for 'drain' so a slow client holds back its own
 * stream only.
 */
export class SseStream {
  private started = false;
  /** The write the client has not taken yet, while there is one. */
  private waiting: Promise<void> | undefined;

  constructor(
    private readonly reply: FastifyReply,
    private readonly requestId: string,
    private readonly limits: WriteLimits = {},
  ) {}

  get hasStarted(): boolean {
    return this.started;
  }

  async send(data: unknown): Promise<void> {
    this.start();
    const raw = this.reply.raw;
    // The choices of one request send concurrently: while the client is not taking more they
    // share one wait (one set of listeners and one stall timer), not one each.
    while (this.waiting) await this.waiting;
    if (raw.destroyed || raw.writableEnded) return;
    const wait = writeWithBackpressure(raw, `data: ${JSON.stringify(data)}\n\n`, this.limits);
    if (!wait) return;
    this.waiting = wait.finally(() => {
      this.waiting = undefined;
    });
    await this.waiting;
  }

  /** Ends the stream the OpenAI way. */
  done(): void {
    this.start();
    const raw = this.reply.raw;
    if (!raw.destroyed && !raw.writableEnded) raw.end('data: [DONE]\n\n');
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.reply.hijack();
    // No flushHeaders(): start() runs as the first event is written, and the head leaves in
    // that same write (one syscall, and one read for a gateway, instead of two).
    this.reply.raw.writeHead(200, { ...SSE_HEADERS, 'x-request-id': this.requestId });
  }
}
