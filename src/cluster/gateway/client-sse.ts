import { SSE_HEADERS, writeWithBackpressure, type WriteLimits } from '../../server/sse.js';
import type { FastifyReply } from 'fastify';

/**
 * The gateway's side of an SSE response to its client. Events are queued and written
 * together by flush() (the relay flushes once per upstream read): on loopback every write
 * is a syscall, and a final token, the usage chunk and [DONE] often arrive in one read.
 * Headers are not flushed on their own; they leave with the first events.
 */
export class ClientSse {
  private started = false;
  private pending = '';
  private ended = false;
  /** Sent as `x-autoglm-worker` (the worker that produced the first chunk), for tracing. */
  workerId: string | null = null;

  constructor(
    private readonly reply: FastifyReply,
    private readonly requestId: string,
    private readonly limits: WriteLimits = {},
  ) {}

  /** True once the response is committed to SSE (an event was queued): errors go in-band. */
  get hasStarted(): boolean {
    return this.started;
  }

  get closed(): boolean {
    return this.reply.raw.destroyed || this.reply.raw.writableEnded;
  }

  /** Adds one event (a JSON string or a value to serialise) to the next flush. */
  queue(data: unknown): void {
    this.start();
    this.pending += `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
  }

  /**
   * Writes the queued events in one write. Returns nothing when the client can take more at
   * once (the common case: no promise per write), else a promise for when it can.
   */
  flush(): Promise<void> | undefined {
    if (this.pending === '') return undefined;
    const chunk = this.pending;
    this.pending = '';
    const raw = this.reply.raw;
    if (this.closed) return undefined;
    return writeWithBackpressure(raw, chunk, this.limits);
  }

  async send(data: unknown): Promise<void> {
    this.queue(data);
    await this.flush();
  }

  /** Ends the stream: whatever is queued, then [DONE], in the response's last write. Idempotent. */
  done(): void {
    if (this.ended) return;
    this.ended = true;
    this.start();
    const last = `${this.pending}data: [DONE]\n\n`;
    this.pending = '';
    if (!this.closed) this.reply.raw.end(last);
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.reply.hijack();
    this.reply.raw.writeHead(200, {
      ...SSE_HEADERS,
      'x-request-id': this.requestId,
      ...(this.workerId !== null ? { 'x-autoglm-worker': this.workerId } : {}),
    });
  }
}
