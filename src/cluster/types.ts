import { AutoGlmError } from '../errors.js';

/** A worker as the registry knows it: a stable id and the base URL the gateway reaches it at. */
export interface WorkerEndpoint {
  /** Stable identity (the URL unless the registry knows better, e.g. an etcd key suffix). */
  id: string;
  /** Base URL without a trailing slash, e.g. http://10.0.0.7:8000. */
  url: string;
}

/** What the health monitor says about a worker; only `healthy` ones get new requests. */
export type WorkerState = 'healthy' | 'draining' | 'unhealthy';

export const WORKER_STATES: readonly WorkerState[] = ['healthy', 'draining', 'unhealthy'];

/** Header that proves a request comes from the gateway (same name the server checks). */
export const CLUSTER_SECRET_HEADER = 'x-autoglm-cluster-secret';

export function normalizeUrl(url: string): string {
  return url.replace(/\/+$/, '');
}

/**
 * A worker's base URL from outside (a flag, a registration, an etcd value, a DNS answer),
 * normalized, or null when it is not an http(s) URL with a host and nothing after its path:
 * the gateway builds `${url}/ready` and `${url}/v1/...` from it, and a URL that does not
 * parse would throw there, in a timer or a registry listener, and take the gateway down.
 */
export function parseWorkerUrl(raw: unknown): string | null {
  if (typeof raw !== 'string') return null;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return null;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.host === '' || u.username || u.password || u.search || u.hash) return null;
  return normalizeUrl(`${u.protocol}//${u.host}${u.pathname}`);
}

/** parseWorkerUrl, or invalid_request saying `${what} must be an http(s) URL` and naming `param`. */
export function requireWorkerUrl(raw: unknown, what: string, param: string): string {
  const url = parseWorkerUrl(raw);
  if (url === null)
    throw new AutoGlmError('invalid_request', `${what} must be an http(s) URL such as http://10.0.0.7:8000, got '${String(raw)}'.`, {
      param,
    });
  return url;
}
