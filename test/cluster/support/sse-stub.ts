/**
 * A loopback worker that answers /ready 200 and every generation with a stream the test
 * writes: `answer(request, response)` gets the parsed body. Used where a real worker cannot
 * be made to misbehave on cue (huge chunks, garbage, a stall after the headers).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { buildGateway, type Gateway } from '../../../src/cluster/gateway/build-gateway.js';
import type { GatewayOptions } from '../../../src/cluster/gateway/options.js';
import { StaticRegistry } from '../../../src/cluster/registry/static-registry.js';
import { waitFor } from './processes.js';

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

/**
 * A gateway without client auth in front of `stubs` (a static registry, in their order),
 * listening on loopback once every stub is healthy. With `firstListedFirst`, equal loads
 * always give the first attempt to the first stub listed.
 */
export async function gatewayOverStubs(
  stubs: readonly SseStub[],
  options: Partial<GatewayOptions> & { firstListedFirst?: boolean } = {},
): Promise<{ gateway: Gateway; url: string }> {
  const { firstListedFirst, ...rest } = options;
  const gateway = await buildGateway({
    registry: new StaticRegistry(stubs.map((s) => s.url)),
    auth: { apiKeys: [], disabled: true },
    health: { probeIntervalMs: 100 },
    ...(firstListedFirst ? { balancer: { random: () => 0 } } : {}),
    ...rest,
  });
  const url = await gateway.listen({ port: 0, host: '127.0.0.1' });
  await waitFor(() => gateway.health.healthy().length === stubs.length, 5000, 'stubs healthy');
  return { gateway, url };
}
