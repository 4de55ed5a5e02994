import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';

/** A worker's answer as the gateway reads it. */
export interface UpstreamResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** The body's bytes as they arrive (read once); it errors if the exchange is cut. */
  readonly body: Readable;
  /** The whole body as UTF-8 text. */
  text(): Promise<string>;
}

/** One request to a worker in flight. */
export interface UpstreamCall {
  /** Resolves with the response head; rejects on a connection error or after cancel(). */
  readonly response: Promise<UpstreamResponse>;
  /** Tears the exchange down; a pending response or body read rejects. Idempotent. */
  cancel(): void;
}

export interface UpstreamRequest {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
}

interface Target {
  secure: boolean;
  hostname: string;
  port: string | number;
  path: string;
}

/** Errors that mean "the idle keep-alive socket we picked was already closed by the worker". */
const STALE_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE']);

/**
 * The gateway's connections to its workers: node:http with keep-alive agents (one pooled,
 * Nagle-free connection set per worker, reused across requests, no per-request connect or
 * DNS look-up). Chosen over global fetch because the gateway relays every token: fetch's
 * WHATWG streams, abort signals and its separate head and body writes cost about twice the
 * CPU per streamed request, and on a box where the "GPU" is the same CPU, gateway CPU is
 * worker latency. The request head and a string body go out in one write.
 */
export class UpstreamPool {
  private readonly httpAgent = new http.Agent({ keepAlive: true, noDelay: true, scheduling: 'lifo' });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, noDelay: true, scheduling: 'lifo' });

  /** Parsed targets by URL: a worker gets the same few URLs over and over. */
  private readonly targets = new Map<string, Target>();

  request(url: string, request: UpstreamRequest): UpstreamCall {
    const { secure, hostname, port, path } = this.target(url);
    const headers: Record<string, string> = { ...request.headers };
    if (request.body !== undefined) headers['content-length'] = String(Buffer.byteLength(request.body));
    let cancelled = false;
    let current: { req: http.ClientRequest; res: http.IncomingMessage | null } | null = null;

    const send = (staleRetryLeft: boolean): Promise<UpstreamResponse> =>
      new Promise<UpstreamResponse>((resolve, reject) => {
        const options: http.RequestOptions = {
          method: request.method,
          hostname,
          port,
          path,
          headers,
          agent: secure ? this.httpsAgent : this.httpAgent,
        };
        const req = (secure ? https : http).request(options);
        const exchange: { req: http.ClientRequest; res: http.IncomingMessage | null } = { req, res: null };
        current = exchange;
        req.on('error', (e: NodeJS.ErrnoException) => {
          if (exchange.res !== null) return; // the body iterator reports it
          // A keep-alive socket the worker closed just as we reused it: the request never
          // reached a live connection, so send it again once on a fresh one, no penalty.
          if (staleRetryLeft && !cancelled && req.reusedSocket && STALE_SOCKET_CODES.has(e.code ?? '')) {
            send(false).then(resolve, reject);
            return;
          }
          reject(e);
        });
        req.on('response', (res) => {
          exchange.res = res;
          // Errors surface through the body iterator or text(); this keeps an unread,
          // cancelled body from becoming an uncaught 'error' event.
          res.on('error', () => undefined);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: res,
            text: async () => {
              const parts: Buffer[] = [];
              for await (const part of res as AsyncIterable<Buffer>) parts.push(part);
              return Buffer.concat(parts).toString('utf8');
            },
          });
        });
        if (cancelled) req.destroy(cancelError());
        else req.end(request.body);
      });

    return {
      response: send(true),
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        if (current === null) return;
        const { req, res } = current;
        const err = cancelError();
        res?.destroy(err);
        req.destroy(err);
      },
    };
  }

  private target(url: string): Target {
    let t = this.targets.get(url);
    if (t === undefined) {
      const u = new URL(url);
      const secure = u.protocol === 'https:';
      t = {
        secure,
        hostname: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port || (secure ? 443 : 80),
        path: `${u.pathname}${u.search}`,
      };
      // Workers come and go (autoscaling): keep the map bounded.
      if (this.targets.size >= 1024) this.targets.clear();
      this.targets.set(url, t);
    }
    return t;
  }

  /** Closes pooled connections (the gateway is shutting down). */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

function cancelError(): Error {
  return Object.assign(new Error('upstream request cancelled'), { code: 'ERR_UPSTREAM_CANCELLED' });
}
