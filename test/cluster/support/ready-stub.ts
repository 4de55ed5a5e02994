/** A loopback HTTP server whose /ready answers as told: ready, draining, not ready, or never (hangs). */
import { createServer, type Server, type ServerResponse } from 'node:http';

export type StubMode = 'ready' | 'draining' | 'loading' | 'hang';

export class ReadyStub {
  mode: StubMode = 'ready';
  probes = 0;
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
      if (req.url === '/ready') this.probes++;
      else this.others++;
      if (this.mode === 'hang') {
        this.hung.add(res);
        return;
      }
      const [status, body] =
        this.mode === 'ready'
          ? [200, { status: 'ready' }]
          : this.mode === 'draining'
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
