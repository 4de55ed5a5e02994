import { AutoGlmError } from '../../errors.js';
import type { Balancer, LoadTicket } from '../balancer.js';
import type { FailureKind, HealthMonitor } from '../health-monitor.js';
import { CLUSTER_SECRET_HEADER, type WorkerEndpoint } from '../types.js';
import type { GatewayMetrics } from './metrics.js';
import type { RetryBudget } from './retry-budget.js';
import type { UpstreamPool, UpstreamResponse } from './upstream-http.js';

/** Statuses that say "this worker, not this request": try another one. */
const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504, 507]);
/**
 * The worker refused the gateway's own credentials (cluster secret, --worker-api-key): the
 * client's key was already accepted by the gateway, so passing the worker's "Incorrect API
 * key" on would blame the client. A worker set up with other credentials cannot serve this
 * gateway: another worker is tried and the answer, if all fail, is the gateway's 502.
 */
const CREDENTIALS_REFUSED_STATUS = new Set([401, 403]);

export interface UpstreamConfig {
  clusterSecret?: string;
  /** Sent as `Authorization: Bearer` to workers that also check API keys. */
  workerApiKey?: string;
  /** Most attempts per request, first one included (default 3). */
  maxAttempts: number;
  /** An attempt with no response headers (streams: no first token) after this long fails (default 60 s). */
  firstByteTimeoutMs: number;
  /** A stream silent for this long is treated as cut (default 30 s). */
  idleTimeoutMs: number;
  /** The largest body a worker takes: the gateway's own limit, since both default to 4 MiB. */
  maxBodyBytes: number;
}

export interface UpstreamDeps {
  health: HealthMonitor;
  balancer: Balancer;
  budget: RetryBudget;
  metrics: GatewayMetrics;
  config: UpstreamConfig;
  /** Keep-alive connections to the workers. */
  pool: UpstreamPool;
  /**
   * For a LoRA adapter the gateway keeps on every worker (run-time LoRA updates), the
   * workers known to serve it now; null for any other model.
   */
  adapterHolders?: (model: string) => ReadonlySet<string> | null;
}

/** One open upstream response, with the timers and load ticket that belong to it. */
export interface OpenAttempt {
  worker: WorkerEndpoint;
  response: UpstreamResponse;
  ticket: LoadTicket;
  /** Restarts the idle timer (call on every chunk). */
  touch(): void;
  /**
   * Stops the idle timer while the client, not the worker, holds the stream up (its socket
   * is full and the body is paused); the next touch() re-arms it.
   */
  pauseIdle(): void;
  /** Aborts the upstream request (client gone, or giving up on this worker). */
  abort(): void;
  /** Why the attempt's signal fired, if it did. */
  abortReason(): 'timeout' | 'client' | 'deadline' | null;
  /** Releases the load ticket and timers; idempotent. */
  finish(): void;
  startedMs: number;
}

export interface RequestScope {
  requestId: string;
  /** performance.now() value after which no new attempt starts. */
  deadlineMs: number;
  /** Workers that failed this request: avoided while others are healthy. */
  failed: Set<string>;
  attempts: number;
  clientSignal: AbortSignal;
  affinityKey?: string;
  estimatedTokens: number;
  /** The body's `model`: a LoRA adapter's name goes only to workers that list it. */
  model?: string;
}

export function classifyFetchError(e: unknown): FailureKind {
  const code = (e as { cause?: { code?: string } }).cause?.code ?? (e as { code?: string }).code ?? '';
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect';
  return 'reset';
}

/**
 * Picks a worker and sends one attempt; on a failure that is the worker's fault (refused,
 * reset, timeout, 5xx, 429, or a 401/403 for the gateway's credentials) tries another, while
 * attempts, the retry budget and the deadline allow; a request that two workers answer 500
 * is not tried further. Any other 4xx answer is the client's and comes back as it is.
 */
export async function openWithRetries(
  deps: UpstreamDeps,
  scope: RequestScope,
  request: { path: string; method: 'GET' | 'POST'; body?: string },
): Promise<OpenAttempt> {
  let lastError: AutoGlmError | null = null;
  // Workers that answered this request 500. A 500 is a live worker's own verdict, and the
  // request may be what it failed on (an engine bug it triggers fails it everywhere, and on
  // each worker fails the requests batched with it too): so a 500 counts against a worker
  // only once another worker has served the request, and a second worker's 500 ends it.
  const answered500: string[] = [];
  // Written again, a body can outgrow the limit it arrived under (a seed added, resumed token
  // ids, invalid UTF-8 bytes become 3-byte U+FFFD): a worker would refuse it by closing the
  // connection mid-write, which looks like a crash, and a healthy worker would be ejected.
  if (request.body !== undefined && Buffer.byteLength(request.body) > deps.config.maxBodyBytes)
    throw new AutoGlmError(
      'request_too_large',
      `The request body is larger than the workers accept (${deps.config.maxBodyBytes} bytes once re-encoded as UTF-8 JSON).`,
    );
  for (;;) {
    if (scope.clientSignal.aborted) throw new AutoGlmError('request_cancelled', 'The client disconnected.');
    const worker = chooseWorker(deps, scope);
    if (!worker) {
      if (lastError) throw lastError;
      deps.metrics.noHealthyWorker.inc();
      const serving = scope.model !== undefined && deps.health.healthy().length > 0 ? ` serves '${scope.model}' now` : ' is available';
      throw new AutoGlmError('no_healthy_worker', `No healthy worker${serving}; retry later.`);
    }
    scope.attempts++;
    const attempt = await sendAttempt(deps, scope, worker, request);
    if ('response' in attempt) {
      const status = attempt.response.status;
      if (!RETRYABLE_STATUS.has(status) && !CREDENTIALS_REFUSED_STATUS.has(status)) {
        for (const id of answered500) deps.health.reportFailure(id, 'status');
        deps.health.reportSuccess(worker.id);
        deps.metrics.attempt.observe({ outcome: 'ok' }, (performance.now() - attempt.startedMs) / 1000);
        deps.metrics.countWorkerRequest(worker.id, 'ok');
        return attempt;
      }
      // The worker answered but cannot serve: read its error (to pass on if we give up).
      const text = await attempt.response.text().catch(() => '');
      attempt.finish();
      lastError = CREDENTIALS_REFUSED_STATUS.has(status) ? credentialsRefused(worker.id, status, text) : upstreamStatusError(status, text);
      deps.metrics.attempt.observe({ outcome: `http_${status}` }, (performance.now() - attempt.startedMs) / 1000);
      deps.metrics.countWorkerRequest(worker.id, `http_${status}`);
      scope.failed.add(worker.id);
      if (status === 500) {
        if (answered500.length > 0) {
          deps.metrics.retriesRefused.inc({ why: 'request' });
          throw failsEverywhere([...answered500, worker.id], text);
        }
        answered500.push(worker.id);
      } else {
        // Draining or full is the worker being honest, not sick: no health penalty.
        const code = lastError.code;
        if (code !== 'server_draining' && code !== 'queue_full' && code !== 'rate_limit_exceeded')
          deps.health.reportFailure(worker.id, 'status');
      }
      const refused = retryRefusal(deps, scope, `http_${status}`);
      if (refused) throw givingUp(lastError, refused, scope);
      continue;
    }
    const { kind, reason } = attempt;
    deps.metrics.attempt.observe({ outcome: kind }, (performance.now() - attempt.startedMs) / 1000);
    deps.metrics.countWorkerRequest(worker.id, reason === 'client' ? 'cancelled' : kind);
    if (reason === 'client') throw new AutoGlmError('request_cancelled', 'The client disconnected.');
    // The request's own deadline is the client's budget, not the worker's fault (its first-byte timeout is).
    if (reason !== 'deadline') deps.health.reportFailure(worker.id, kind);
    scope.failed.add(worker.id);
    lastError = new AutoGlmError('upstream_error', `Worker ${worker.id} failed (${kind}).`);
    const refused = retryRefusal(deps, scope, kind, reason === 'deadline');
    if (refused) throw givingUp(lastError, refused, scope, reason === 'deadline');
  }
}

/** Why a failed attempt is not retried. */
export type RetryRefusal = 'attempts' | 'deadline' | 'budget';

/**
 * Spends a retry if the request's attempts, its deadline and the cluster's retry budget all
 * allow one (and counts it); otherwise says which of them refused (and counts that).
 */
export function retryRefusal(
  deps: UpstreamDeps,
  scope: RequestScope,
  reason: string,
  /** The attempt was cut by the deadline timer (its clock may read a hair before deadlineMs). */
  deadlineFired = false,
): RetryRefusal | null {
  const refused: RetryRefusal | null =
    deadlineFired || performance.now() >= scope.deadlineMs
      ? 'deadline'
      : scope.attempts >= deps.config.maxAttempts
        ? 'attempts'
        : !deps.budget.tryRetry()
          ? 'budget'
          : null;
  if (refused) deps.metrics.retriesRefused.inc({ why: refused });
  else deps.metrics.retries.inc({ reason });
  return refused;
}

/**
 * The error a client gets when the gateway stops trying: the last worker's failure, and
 * why it was not retried, so that "the cluster is failing" is not mistaken for "my request
 * is wrong". A passed deadline is always `request_timeout`.
 */
export function givingUp(last: AutoGlmError, refused: RetryRefusal, scope: RequestScope, cutByDeadline = false): AutoGlmError {
  if (refused === 'deadline')
    return new AutoGlmError(
      'request_timeout',
      cutByDeadline
        ? 'The request deadline passed before the answer was complete.'
        : `The request deadline passed before the answer was complete (last failure: ${last.message.replace(/\.$/, '')}).`,
    );
  const why =
    refused === 'attempts'
      ? `gave up after ${scope.attempts} attempt${scope.attempts === 1 ? '' : 's'}`
      : "not retried: the gateway's retry budget is spent (too many failed attempts cluster-wide); retry later";
  return new AutoGlmError(last.code, `${last.message.replace(/\.$/, '')}; ${why}.`);
}

/** Healthy workers (serving the request's model) minus those that already failed it (unless that leaves none). */
export function chooseWorker(deps: UpstreamDeps, scope: RequestScope): WorkerEndpoint | null {
  const model = scope.model;
  const holders = model !== undefined ? (deps.adapterHolders?.(model) ?? null) : null;
  // an adapter the gateway keeps: only workers whose present process has it (by their reports
  // and the gateway's own load calls, which a probe a moment old does not show yet)
  const healthy = holders !== null ? deps.health.healthy().filter((w) => holders.has(w.id)) : deps.health.healthyFor(model);
  const fresh = healthy.filter((w) => !scope.failed.has(w.id));
  return deps.balancer.pick(fresh.length > 0 ? fresh : healthy, scope.affinityKey !== undefined ? { affinityKey: scope.affinityKey } : {});
}

/** The code and message of a worker's OpenAI error body (empty strings where it is not one). */
export function workerError(text: string): { code: string; message: string } {
  try {
    const error = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    const str = (v: unknown): string => (typeof v === 'string' ? v : '');
    return { code: str(error?.code), message: str(error?.message) };
  } catch {
    return { code: '', message: '' };
  }
}

function failsEverywhere(workerIds: string[], text: string): AutoGlmError {
  const said = workerError(text).message;
  return new AutoGlmError(
    'upstream_error',
    `Workers ${workerIds.join(' and ')} both answered HTTP 500${said ? ` (${said.replace(/\.$/, '')})` : ''}: the request itself fails, ` +
      'so it was not retried further and no worker was counted as failing.',
  );
}

function credentialsRefused(workerId: string, status: number, text: string): AutoGlmError {
  const said = workerError(text).message;
  return new AutoGlmError(
    'upstream_error',
    `Worker ${workerId} refused the gateway's credentials (HTTP ${status}${said ? `: ${said}` : ''}); ` +
      "the gateway's cluster secret and --worker-api-key must match the worker's.",
  );
}

function upstreamStatusError(status: number, text: string): AutoGlmError {
  const { code, message } = workerError(text);
  if (code === 'server_draining' || code === 'queue_full' || code === 'rate_limit_exceeded' || code === 'not_ready')
    return new AutoGlmError(code, message || code);
  return new AutoGlmError(status === 504 || status === 408 ? 'request_timeout' : 'upstream_error', `Worker answered HTTP ${status}.`);
}

type AttemptResult = OpenAttempt | { kind: FailureKind; reason: 'timeout' | 'client' | 'deadline' | null; startedMs: number };

export function workerHeaders(config: UpstreamConfig, requestId: string, hasBody: boolean): Record<string, string> {
  const headers: Record<string, string> = { 'x-request-id': requestId, ...credentialHeaders(config) };
  if (hasBody) headers['content-type'] = 'application/json';
  return headers;
}

/** The gateway's credentials at a worker: its cluster secret and --worker-api-key, where set. */
export function credentialHeaders(config: Pick<UpstreamConfig, 'clusterSecret' | 'workerApiKey'>): Record<string, string> {
  const headers: Record<string, string> = {};
  if (config.clusterSecret !== undefined) headers[CLUSTER_SECRET_HEADER] = config.clusterSecret;
  if (config.workerApiKey !== undefined) headers.authorization = `Bearer ${config.workerApiKey}`;
  return headers;
}

async function sendAttempt(
  deps: UpstreamDeps,
  scope: RequestScope,
  worker: WorkerEndpoint,
  request: { path: string; method: 'GET' | 'POST'; body?: string },
): Promise<AttemptResult> {
  const startedMs = performance.now();
  const call = deps.pool.request(`${worker.url}${request.path}`, {
    method: request.method,
    headers: workerHeaders(deps.config, scope.requestId, request.body !== undefined),
    ...(request.body !== undefined ? { body: request.body } : {}),
  });
  let reason: 'timeout' | 'client' | 'deadline' | null = null;
  const fire = (why: 'timeout' | 'client' | 'deadline'): void => {
    if (reason === null) reason = why;
    call.cancel();
  };
  const onClient = (): void => fire('client');
  scope.clientSignal.addEventListener('abort', onClient);
  // A worker the monitor finds unhealthy (probes time out, process gone) is not waited on:
  // this is what bounds a non-streamed request to a blackholed worker. Draining is fine.
  const unwatch = deps.health.onStateChange((id, state) => {
    if (id === worker.id && state === 'unhealthy') fire('timeout');
  });
  const deadlineTimer = setTimeout(() => fire('deadline'), Math.max(0, scope.deadlineMs - startedMs));
  // First the first-byte timeout; from the first touch() on, the idle timeout, re-armed per
  // chunk with refresh() (no timer allocated per token).
  let idleTimer = setTimeout(() => fire('timeout'), deps.config.firstByteTimeoutMs);
  let idleArmed = false;
  // The per-worker outstanding gauge is read from the balancer when /metrics is scraped,
  // not set here: two labelled gauge updates per attempt for a value nobody reads between scrapes.
  const ticket = deps.balancer.acquire(worker.id, scope.estimatedTokens);
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    clearTimeout(deadlineTimer);
    clearTimeout(idleTimer);
    scope.clientSignal.removeEventListener('abort', onClient);
    unwatch();
    ticket.done();
  };
  try {
    const response = await call.response;
    return {
      worker,
      response,
      ticket,
      startedMs,
      touch: () => {
        // A drain the relay waited on can settle after the attempt ended: no timer then.
        if (finished) return;
        if (idleArmed) {
          idleTimer.refresh();
          return;
        }
        idleArmed = true;
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => fire('timeout'), deps.config.idleTimeoutMs);
      },
      pauseIdle: () => {
        clearTimeout(idleTimer);
        idleArmed = false;
      },
      abort: () => call.cancel(),
      abortReason: () => reason,
      finish,
    };
  } catch (e) {
    finish();
    return { kind: reason === 'timeout' || reason === 'deadline' ? 'timeout' : classifyFetchError(e), reason, startedMs };
  }
}
