/**
 * A Kubernetes API server on loopback that serves exactly what the kubernetes registry
 * uses: list and watch of EndpointSlices in one namespace, filtered by the
 * `kubernetes.io/service-name` label. Like the real one: one global resourceVersion, a
 * watch from a version replays the events after it and then streams (chunked, one JSON
 * object per line), bookmarks when asked for, 410 for a version older than the kept
 * history (as an HTTP status or an ERROR event), timeoutSeconds, bearer tokens (401).
 * Test hooks cut, end or freeze the open watches and change which tokens are accepted.
 */
import { selfSignedCert as makeCert } from '../../helpers/self-signed-cert.js';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { EndpointSlice, EndpointSlicePort } from '../../../src/cluster/registry/endpoint-slices.js';

export interface FakeEndpoint {
  ip: string;
  /** The pod (targetRef); omitted: an endpoint without one. */
  pod?: string;
  ready?: boolean;
  terminating?: boolean;
}

/** An EndpointSlice of `service` as the EndpointSlice controller writes one. */
export function endpointSlice(
  name: string,
  service: string,
  endpoints: FakeEndpoint[],
  ports: EndpointSlicePort[] = [{ name: 'http', port: 8000 }],
  addressType: 'IPv4' | 'IPv6' = 'IPv4',
): EndpointSlice {
  return {
    metadata: { name, labels: { 'kubernetes.io/service-name': service } },
    addressType,
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.ready ?? true, terminating: e.terminating ?? false },
      ...(e.pod !== undefined ? { targetRef: { kind: 'Pod', name: e.pod } } : {}),
    })),
    ports: ports.map((p) => ({ protocol: 'TCP', ...p })),
  };
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';
interface Watcher {
  res: ServerResponse;
  service: string;
  bookmarks: boolean;
  /** A silent connection: open, but nothing more is written to it. */
  frozen: boolean;
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
}

export class FakeKubeApi {
  private revision = 1;
  private readonly slices = new Map<string, EndpointSlice>();
  private history: { rv: number; type: EventType; object: EndpointSlice }[] = [];
  /** Watches from a version below this get 410: the events after it are no longer kept. */
  private oldestKept = 1;
  private readonly watchers = new Set<Watcher>();
  /** Accepted bearer tokens; null: no token needed. */
  tokens: Set<string> | null;
  /** How an expired version is answered: HTTP 410, or 200 and an ERROR event (both happen in practice). */
  expiredAs: 'status' | 'event' = 'event';
  /** Listings start their answer and never finish it (a connection that went half-open mid-answer). */
  stallLists = false;
  private readonly stalled = new Set<ServerResponse>();
  /** Requests seen, for assertions. */
  readonly counts = { lists: 0, watches: 0, unauthorized: 0, expired: 0 };
  /** The bearer token of each request, in order. */
  readonly tokensSeen: (string | null)[] = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly namespace: string,
    tokens: string[] | null,
  ) {
    this.tokens = tokens === null ? null : new Set(tokens);
  }

  static async start(
    options: { namespace?: string; tokens?: string[] | null; tls?: { key: Buffer; cert: Buffer }; port?: number } = {},
  ): Promise<FakeKubeApi> {
    let api: FakeKubeApi | null = null;
    const handler = (req: IncomingMessage, res: ServerResponse): void => api!.handle(req, res);
    const server = options.tls ? createHttpsServer(options.tls, handler) : createHttpServer(handler);
    await new Promise<void>((r) => server.listen(options.port ?? 0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    api = new FakeKubeApi(
      server,
      `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
      options.namespace ?? 'default',
      options.tokens ?? null,
    );
    return api;
  }

  /** Creates or replaces a slice (ADDED or MODIFIED to the watches). */
  apply(slice: EndpointSlice): void {
    const type: EventType = this.slices.has(slice.metadata.name) ? 'MODIFIED' : 'ADDED';
    const object = this.stamp(slice);
    this.slices.set(slice.metadata.name, object);
    this.record(type, object);
  }

  delete(name: string): void {
    const last = this.slices.get(name);
    if (!last) throw new Error(`no slice ${name}`);
    this.slices.delete(name);
    this.record('DELETED', this.stamp(last));
  }

  /** A BOOKMARK at the current version to every watch that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.watchers)
      if (w.bookmarks) this.send(w, { type: 'BOOKMARK', object: { metadata: { resourceVersion: String(this.revision) } } });
  }

  /** Forgets the event history, as etcd compaction does: a watch from any earlier version gets 410. */
  compact(): void {
    this.history = [];
    this.oldestKept = this.revision;
  }

  /** The current resourceVersion. */
  get resourceVersion(): string {
    return String(this.revision);
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  /** Breaks every open watch connection (no end of the chunked stream): a network failure. */
  cutWatches(): number {
    const n = this.watchers.size;
    for (const w of this.watchers) w.res.socket?.destroy();
    this.watchers.clear();
    return n;
  }

  /** Ends every open watch cleanly, as the server does at timeoutSeconds. */
  endWatches(): number {
    const n = this.watchers.size;
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    return n;
  }

  /** The open watches stay open but receive nothing more: a half-open connection. */
  freezeWatches(): number {
    let n = 0;
    for (const w of this.watchers) {
      if (!w.frozen) n++;
      w.frozen = true;
    }
    return n;
  }

  async close(): Promise<void> {
    for (const res of this.stalled) res.socket?.destroy();
    for (const w of this.watchers) w.res.socket?.destroy();
    this.watchers.clear();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private stamp(slice: EndpointSlice): EndpointSlice {
    this.revision++;
    return { ...structuredClone(slice), metadata: { ...structuredClone(slice.metadata), resourceVersion: String(this.revision) } };
  }

  private record(type: EventType, object: EndpointSlice): void {
    this.history.push({ rv: this.revision, type, object });
    const service = object.metadata.labels?.['kubernetes.io/service-name'];
    for (const w of this.watchers) if (w.service === service) this.send(w, { type, object });
  }

  private send(w: Watcher, event: object): void {
    if (!w.frozen) w.res.write(JSON.stringify(event) + '\n');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7) : null;
    this.tokensSeen.push(token);
    if (this.tokens !== null && (token === null || !this.tokens.has(token))) {
      this.counts.unauthorized++;
      return status(res, 401, 'Unauthorized', 'Unauthorized');
    }
    const m = /^\/apis\/discovery\.k8s\.io\/v1\/namespaces\/([^/]+)\/endpointslices$/.exec(url.pathname);
    if (req.method !== 'GET' || !m)
      return status(res, 404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
    const selector = /^kubernetes\.io\/service-name=([a-z0-9-]+)$/.exec(url.searchParams.get('labelSelector') ?? '');
    if (!selector) return status(res, 400, 'BadRequest', 'this server only answers labelSelector=kubernetes.io/service-name=NAME');
    // Another namespace holds no slices.
    const service = m[1] === this.namespace ? selector[1]! : '';
    const matching = (s: EndpointSlice): boolean => s.metadata.labels?.['kubernetes.io/service-name'] === service;
    const watch = url.searchParams.get('watch');
    if (watch !== '1' && watch !== 'true') {
      this.counts.lists++;
      if (this.stallLists) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"kind":"EndpointSliceList",');
        this.stalled.add(res);
        return void res.once('close', () => this.stalled.delete(res));
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(
        JSON.stringify({
          kind: 'EndpointSliceList',
          apiVersion: 'discovery.k8s.io/v1',
          metadata: { resourceVersion: String(this.revision) },
          items: [...this.slices.values()].filter(matching),
        }),
      );
    }
    this.counts.watches++;
    const from = url.searchParams.get('resourceVersion');
    if (from !== null && from !== '' && from !== '0' && Number(from) < this.oldestKept) {
      this.counts.expired++;
      const message = `too old resource version: ${from} (${this.oldestKept})`;
      if (this.expiredAs === 'status') return status(res, 410, 'Expired', message);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          type: 'ERROR',
          object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason: 'Expired', code: 410 },
        }) + '\n',
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    const w: Watcher = { res, service, bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true', frozen: false };
    // No version (or 0): the current state as ADDED events; else the events after it.
    const replay =
      from === null || from === '' || from === '0'
        ? [...this.slices.values()].filter(matching).map((object) => ({ type: 'ADDED', object }))
        : this.history.filter((e) => e.rv > Number(from) && matching(e.object)).map(({ type, object }) => ({ type, object }));
    for (const event of replay) this.send(w, event);
    this.watchers.add(w);
    const timeoutS = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    const timer = timeoutS > 0 ? setTimeout(() => res.end(), timeoutS * 1000) : null;
    res.once('close', () => {
      if (timer) clearTimeout(timer);
      this.watchers.delete(w);
    });
  }
}

/** A self-signed certificate for 127.0.0.1, as the API server's. */
export function selfSignedCert(): { key: Buffer; cert: Buffer; certFile: string } {
  return makeCert('kubernetes');
}
