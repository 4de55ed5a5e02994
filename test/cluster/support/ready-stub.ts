/**
 * A loopback HTTP server that plays a worker as told. `mode` is what /ready answers:
 * ready, draining, not ready, or never (hang, which also swallows every other request).
 * `traffic` makes the other requests (what the gateway routes here) misbehave on their
 * own while /ready keeps answering: hang, answer HTTP 500 or 503, or reset the connection.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';

export type StubMode = 'ready' | 'draining' | 'loading' | 'hang';
export type TrafficMode = 'hang' | 'status-500' | 'status-503' | 'reset';

export class ReadyStub {
  mode: StubMode = 'ready';
  /** How non-/ready requests are answered; null: like /ready. */
  traffic: TrafficMode | null = null;
  /** The model a ready answer names (as a worker's /ready does); null: none, as an older worker. */
  model: string | null = null;
  probes = 0;
  /** performance.now() at each /ready probe's arrival. */
  readonly probeTimes: number[] = [];
  /** Requests other than /ready (traffic the gateway routed here). */
  others = 0;
  private server: Server | null = null;
  private readonly hung = new Set<ServerResponse>();
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      const probe = req.url === '/ready';
      if (probe) {
        this.probes++;
        this.probeTimes.push(performance.now());
      } else this.others++;
      const behaviour = probe ? this.mode : (this.traffic ?? this.mode);
      if (behaviour === 'hang') {
        this.hung.add(res);
        res.once('close', () => this.hung.delete(res));
        return;
      }
      if (behaviour === 'reset') {
        req.socket.destroy();
        return;
      }
      const [status, body] =
        behaviour === 'status-500'
          ? [500, { error: { message: 'stub failure', type: 'server_error', code: 'internal_error' } }]
          : behaviour === 'status-503'
            ? [503, { error: { message: 'stub unavailable', type: 'server_error', code: 'gpu_unavailable' } }]
            : behaviour === 'ready'
              ? [200, { status: 'ready', ...(this.model !== null ? { model: this.model } : {}) }]
              : behaviour === 'draining'
                ? [503, { error: { code: 'server_draining' } }]
                : [503, { error: { code: 'not_ready' } }];
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((r) => this.server!.listen(port, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const r of this.hung) r.destroy();
    this.hung.clear();
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = null;
  }
}
