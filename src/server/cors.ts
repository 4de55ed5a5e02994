import type { FastifyInstance } from 'fastify';
import { AutoGlmError } from '../errors.js';

/**
 * Cross-origin access for browser clients (a web app calling the server or gateway
 * directly, as vLLM's --allowed-origins allows). Off unless origins are configured: the
 * API authenticates with bearer keys, never cookies, so '*' exposes nothing a browser would
 * send on its own, but an operator should still choose it.
 */
export interface CorsOptions {
  /** Exact origins (scheme://host[:port]) allowed to call the API, or ['*'] for any. */
  allowedOrigins: readonly string[];
}

/** Headers a browser script may read from an answer: tracing, rate limits, which worker served it. */
const EXPOSED_HEADERS = 'x-request-id, retry-after, x-autoglm-worker';
const ALLOWED_METHODS = 'GET, POST, OPTIONS';
/** What a preflight may ask to send when it names nothing unusual. */
const DEFAULT_ALLOWED_HEADERS = 'authorization, content-type, x-request-id';
/** Browsers cache a preflight's answer this long (seconds): one preflight per endpoint per 10 min. */
const PREFLIGHT_MAX_AGE_S = 600;

/**
 * Parses an --allowed-origins value: '*' or a comma-separated list of origins. Each origin
 * must be what a browser sends in its Origin header, scheme://host[:port] with no path, so
 * that a typo (a trailing slash, a path) fails at start-up instead of never matching.
 */
export function parseAllowedOrigins(value: string, label: string): string[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new RangeError(`${label} must be '*' or a comma-separated list of origins, got '${value}'`);
  if (items.includes('*')) {
    if (items.length > 1) throw new RangeError(`${label}: '*' allows every origin and cannot be combined with others`);
    return ['*'];
  }
  return items.map((item) => {
    let url: URL;
    try {
      url = new URL(item);
    } catch {
      throw new RangeError(`${label}: '${item}' is not an origin (expected scheme://host[:port], e.g. https://app.example.com)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RangeError(`${label}: '${item}' must be an http or https origin`);
    if (url.origin !== item.replace(/\/$/, '') || item.endsWith('/') || url.username !== '' || url.password !== '')
      throw new RangeError(`${label}: '${item}' is not an origin: write it as '${url.origin}' (no path, query or trailing slash)`);
    return url.origin;
  });
}

/**
 * Adds CORS headers to every answer to an allowed origin (errors and streams included: they
 * are set on the raw response before any handler runs, and Node merges them into whatever
 * head is written later) and answers preflights before authentication, which a preflight
 * never carries. A preflight from an origin that is not allowed gets a 403 saying so; a
 * plain request from one is served without CORS headers, and the browser withholds it.
 */
export function installCors(app: FastifyInstance, options: CorsOptions): void {
  const any = options.allowedOrigins.includes('*');
  const allowed = new Set(options.allowedOrigins);
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    if (typeof origin !== 'string') return;
    const preflight = request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined;
    if (!any && !allowed.has(origin)) {
      if (!preflight) return;
      throw new AutoGlmError('origin_not_allowed', `Origin ${origin} is not allowed to call this server (see --allowed-origins).`);
    }
    const raw = reply.raw;
    raw.setHeader('access-control-allow-origin', any ? '*' : origin);
    if (!any) raw.setHeader('vary', 'Origin');
    raw.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
    if (!preflight) return;
    const asked = request.headers['access-control-request-headers'];
    raw.setHeader('access-control-allow-methods', ALLOWED_METHODS);
    raw.setHeader('access-control-allow-headers', typeof asked === 'string' && asked.trim() !== '' ? asked : DEFAULT_ALLOWED_HEADERS);
    raw.setHeader('access-control-max-age', String(PREFLIGHT_MAX_AGE_S));
    await reply.code(204).send();
  });
}
