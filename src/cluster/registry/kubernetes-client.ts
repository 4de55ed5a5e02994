/**
 * The two Kubernetes API calls the kubernetes registry needs, over node:http(s) (global fetch
 * cannot take a CA bundle): list a Service's EndpointSlices, and watch them from a
 * resourceVersion (a chunked stream of one JSON event per line). No client library.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { EndpointSlice } from './endpoint-slices.js';
import { SERVICE_NAME_LABEL } from './endpoint-slices.js';
import type { KubernetesAccess } from './kubernetes-access.js';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export interface WatchEvent {
  type: WatchEventType;
  /** A BOOKMARK's object carries only metadata.resourceVersion. */
  object: EndpointSlice;
}

const EVENT_TYPES: ReadonlySet<string> = new Set<WatchEventType>(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK']);

export class KubernetesApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'KubernetesApiError';
  }

  /** 410 Gone: the resourceVersion is older than the API server keeps; only a new listing helps. */
  get expired(): boolean {
    return this.status === 410;
  }
}

export interface KubernetesClientOptions {
  /** A listing, or a watch's response headers, must arrive within this (default 10000 ms). */
  requestTimeoutMs?: number;
}

export class KubernetesClient {
  constructor(
    private readonly access: KubernetesAccess,
    private readonly options: KubernetesClientOptions = {},
  ) {}

  /** Every EndpointSlice of the Service, and the resourceVersion to watch from. */
  async listEndpointSlices(service: string, signal?: AbortSignal): Promise<{ slices: EndpointSlice[]; resourceVersion: string }> {
    // The whole listing within the timeout: one held by a half-open connection would hold
    // the registry's resync (and its relisting) for ever.
    const deadline = AbortSignal.timeout(this.options.requestTimeoutMs ?? 10_000);
    const res = await this.open(this.slicesPath(service, {}), signal ? AbortSignal.any([signal, deadline]) : deadline);
    const text = await readBody(res);
    let list: { metadata?: { resourceVersion?: unknown }; items?: unknown };
    try {
      list = JSON.parse(text) as typeof list;
    } catch {
      throw new KubernetesApiError(`EndpointSlice list: not JSON: ${text.slice(0, 200)}`);
    }
    const resourceVersion = list.metadata?.resourceVersion;
    if (typeof resourceVersion !== 'string' || !Array.isArray(list.items))
      throw new KubernetesApiError(`EndpointSlice list: no items or resourceVersion: ${text.slice(0, 200)}`);
    return { slices: (list.items as unknown[]).filter(isSlice), resourceVersion };
  }

  /**
   * Watches the Service's slices from `resourceVersion` until the server ends the stream
   * (after `timeoutSeconds`; it resolves) or it fails or the signal aborts (it throws). An
   * ERROR event is thrown as KubernetesApiError with its code: 410 means list again.
   */
  async watchEndpointSlices(
    service: string,
    resourceVersion: string,
    onEvent: (event: WatchEvent) => void,
    signal: AbortSignal,
    timeoutSeconds: number,
    onOpen?: () => void,
  ): Promise<void> {
    const res = await this.open(
      this.slicesPath(service, { watch: '1', resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds) }),
      signal,
    );
    onOpen?.();
    res.setEncoding('utf8');
    let buffered = '';
    for await (const chunk of res as AsyncIterable<string>) {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line !== '') onEvent(parseEvent(line));
      }
    }
  }

  private slicesPath(service: string, extra: Record<string, string>): string {
    const query = new URLSearchParams({ labelSelector: `${SERVICE_NAME_LABEL}=${service}`, ...extra });
    return `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(this.access.namespace)}/endpointslices?${query}`;
  }

  /**
   * A GET whose response headers say 200. A 401 re-reads the token file and tries once more
   * when the token changed: the kubelet rotated it and the old one has expired.
   */
  private async open(path: string, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    let res = await this.get(path, signal);
    if (res.statusCode === 401 && this.access.tokens?.reload()) {
      res.resume();
      res = await this.get(path, signal);
    }
    if (res.statusCode === 200) return res;
    const body = await readBody(res).catch(() => '');
    throw new KubernetesApiError(`Kubernetes API GET ${path.split('?')[0]}: HTTP ${res.statusCode} ${statusMessage(body)}`, res.statusCode);
  }

  private get(path: string, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    const url = new URL(this.access.apiUrl + path);
    const token = this.access.tokens?.current();
    const headers = { accept: 'application/json', ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) };
    const timeoutMs = this.options.requestTimeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const options = { method: 'GET', headers, ...(signal ? { signal } : {}) };
      const req =
        url.protocol === 'https:'
          ? httpsRequest(url, { ...options, ...(this.access.ca ? { ca: this.access.ca } : {}) })
          : httpRequest(url, options);
      // Until the headers: a watch may then stay quiet for minutes, which is not a failure.
      const timer = setTimeout(() => req.destroy(new KubernetesApiError(`Kubernetes API: no answer within ${timeoutMs} ms`)), timeoutMs);
      req.once('response', (res) => {
        clearTimeout(timer);
        resolve(res);
      });
      // on, not once: a request can fail more than once (aborted after a reset), and an
      // error event without a listener would take the gateway down.
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e instanceof KubernetesApiError ? e : new KubernetesApiError(`Kubernetes API ${url.host}: ${e.message}`));
      });
      req.end();
    });
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => (text += d));
    res.once('end', () => resolve(text));
    res.on('error', reject);
  });
}

/** The message of a Status body (`{"kind":"Status","message":...}`), else the body's start. */
function statusMessage(body: string): string {
  try {
    const status = JSON.parse(body) as { message?: unknown; reason?: unknown };
    if (typeof status.message === 'string') return `${typeof status.reason === 'string' ? `${status.reason}: ` : ''}${status.message}`;
  } catch {
    // not a Status
  }
  return body.slice(0, 200);
}

function parseEvent(line: string): WatchEvent {
  let msg: { type?: unknown; object?: { code?: unknown; reason?: unknown; message?: unknown } };
  try {
    msg = JSON.parse(line) as typeof msg;
  } catch {
    throw new KubernetesApiError(`EndpointSlice watch: not JSON: ${line.slice(0, 200)}`);
  }
  if (msg.type === 'ERROR') {
    const status = msg.object ?? {};
    throw new KubernetesApiError(
      `EndpointSlice watch: ERROR ${String(status.code)} ${String(status.reason ?? '')}: ${String(status.message ?? '')}`,
      typeof status.code === 'number' ? status.code : undefined,
    );
  }
  if (typeof msg.type !== 'string' || !EVENT_TYPES.has(msg.type) || !hasResourceVersion(msg.object))
    throw new KubernetesApiError(`EndpointSlice watch: not an event: ${line.slice(0, 200)}`);
  if (msg.type !== 'BOOKMARK' && !isSlice(msg.object))
    throw new KubernetesApiError(`EndpointSlice watch: not an EndpointSlice: ${line.slice(0, 200)}`);
  return { type: msg.type as WatchEventType, object: msg.object as EndpointSlice };
}

function hasResourceVersion(o: unknown): boolean {
  return typeof (o as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata?.resourceVersion === 'string';
}

function isSlice(o: unknown): o is EndpointSlice {
  return typeof (o as { metadata?: { name?: unknown } } | null)?.metadata?.name === 'string';
}
