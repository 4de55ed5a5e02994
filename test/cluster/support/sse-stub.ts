/**
 * A loopback worker that answers /ready 200 and every generation with a stream the test
 * writes: `answer(request, response)` gets the parsed body. Used where a real worker cannot
 * be made to misbehave on cue (huge chunks, garbage, a stall after the headers).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export type Answer = (body: Record<string, unknown>, res: ServerResponse, req: IncomingMessage) => void;

export class SseStub {
  /** Parsed bodies of the generation requests received, in order. */
  readonly bodies: Record<string, unknown>[] = [];
  private server: Server | null = null;
  private readonly open = new Set<ServerResponse>();

  constructor(public answer: Answer) {}

  get url(): string {
    return `http://127.0.0.1:${(this.server!.address() as { port: number }).port}`;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      if (req.url === '/ready') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}');
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => {
        const body = JSON.parse(text) as Record<string, unknown>;
        this.bodies.push(body);
        this.open.add(res);
        res.once('close', () => this.open.delete(res));
        this.answer(body, res, req);
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    return this;
  }

  async stop(): Promise<void> {
    for (const r of this.open) r.destroy();
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = null;
  }
}

/** One completion chunk the way a worker streams it with return_token_ids on. */
export function tokenEvent(tokenId: number, text: string, finishReason: string | null = null): string {
  return `data: ${JSON.stringify({ id: 'cmpl-stub', object: 'text_completion', created: 1, choices: [{ index: 0, text, token_ids: [tokenId], finish_reason: finishReason }] })}\n\n`;
}

export function usageEvent(promptTokens: number, completionTokens: number): string {
  return `data: ${JSON.stringify({ id: 'cmpl-stub', object: 'text_completion', created: 1, choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } })}\n\n`;
}
