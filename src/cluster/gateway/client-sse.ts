import type { FastifyReply } from 'fastify';

/** The gateway's side of an SSE response to its client: headers on first write, backpressure, one end. */
export class ClientSse {
  private started = false;
  /** Sent as `x-autoglm-worker` (the worker that produced the first chunk), for tracing. */
  workerId: string | null = null;

  constructor(
    private readonly reply: FastifyReply,
    private readonly requestId: string,
  ) {}

  get hasStarted(): boolean {
    return this.started;
  }

  get closed(): boolean {
    return this.reply.raw.destroyed || this.reply.raw.writableEnded;
  }

  async send(data: unknown): Promise<void> {
    this.start();
    const raw = this.reply.raw;
    if (this.closed) return;
    if (!raw.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          raw.off('drain', done);
          raw.off('close', done);
          resolve();
        };
        raw.on('drain', done);
        raw.on('close', done);
      });
    }
  }

  done(): void {
    this.start();
    if (!this.closed) this.reply.raw.end('data: [DONE]\n\n');
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.reply.hijack();
    this.reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-request-id': this.requestId,
      ...(this.workerId !== null ? { 'x-autoglm-worker': this.workerId } : {}),
    });
    this.reply.raw.flushHeaders();
  }
}
