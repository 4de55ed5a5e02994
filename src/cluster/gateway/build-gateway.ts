import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import { ApiKeyChecker, secretsEqual } from '../../server/auth.js';
import { installErrorHandling, OPENAI_FRAMEWORK_ERRORS } from '../../server/http-errors.js';
import { installCors } from '../../server/cors.js';
import { installJsonBodyParser } from '../../server/json-body.js';
import { Balancer } from '../balancer.js';
import { HealthMonitor } from '../health-monitor.js';
import { poolReadyProbe } from '../ready-probe.js';
import { HeartbeatRegistry } from '../registry/heartbeat-registry.js';
import { CLUSTER_SECRET_HEADER } from '../types.js';
import { ClientRateLimits } from './client-rate-limits.js';
import { checkJsonShape } from '../../server/json-shape.js';
import { forwardWhole, proxyGeneration, type GenerationRouteConfig } from './generation-route.js';
import { GatewayMetrics } from './metrics.js';
import type { GatewayOptions } from './options.js';
import { RetryBudget } from './retry-budget.js';
import { UpstreamPool } from './upstream-http.js';
import { credentialHeaders, type RequestScope, type UpstreamDeps } from './upstream.js';
import { installLoraRoutes } from './lora-routes.js';
import { installModelsRoute, MODELS_TIMEOUT_MS } from './models-route.js';
import { LoraSync } from './lora-sync.js';

/**
 * Most attempts per request (retry.maxAttempts, --max-attempts). Each retry goes to a worker
 * that has not failed the request while there is one, then back to those that have, and
 * stream resumes spend attempts too; the retry budget banks 50 retries by default. Past a
 * handful of workers a failure is the request's or the cluster's, and a value such as 1e9
 * would only mean "retry until the deadline".
 */
export const MAX_ATTEMPTS = 100;

/** Routes clients call (counted in autoglm:gateway_requests_total); probes and scrapes are not. */
const CLIENT_ROUTES = new Set([
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/models',
  '/tokenize',
  '/detokenize',
  '/cluster/workers',
  '/v1/load_lora_adapter',
  '/v1/unload_lora_adapter',
]);

export interface Gateway {
  readonly app: FastifyInstance;
  readonly health: HealthMonitor;
  readonly balancer: Balancer;
  readonly metrics: GatewayMetrics;
  listen(options: { port: number; host: string }): Promise<string>;
  /** Stops listening, probing and discovery. */
  close(): Promise<void>;
}

/**
 * The cluster gateway: the same OpenAI API as a worker, in front of many. Discovery feeds
 * the health monitor; the balancer picks among healthy workers; generation routes retry
 * before the first token and resume streams after it.
 */
export async function buildGateway(options: GatewayOptions): Promise<Gateway> {
  const maxAttempts = maxAttemptsOf(options);
  // Client auth first: a bad key limit fails here, before discovery and probes start.
  const keys = new ApiKeyChecker(options.auth.apiKeys);
  // what the auth check returns for a configured key (null: no client can send it)
  const identityOf = (key: string): string | null => {
    try {
      return keys.authenticate(`Bearer ${key}`);
    } catch {
      return null;
    }
  };
  const limits = new ClientRateLimits(options.rateLimit, options.keyRateLimits ?? new Map(), identityOf);
  const limiter = limits.unlimited ? null : limits;
  const priorityFloors = keyPriorityFloors(options.keyPriorities, identityOf);
  /** The priority floor of each request whose key has one (read by the generation routes). */
  const requestFloors = new WeakMap<FastifyRequest, number>();
  const metrics = new GatewayMetrics();
  const pool = new UpstreamPool();
  const credentials = credentialHeaders(options);
  // with the gateway's credentials: a worker tells only such a caller its run-time adapters' folders
  const health = new HealthMonitor(options.health, undefined, poolReadyProbe(pool, credentials));
  const balancer = new Balancer(options.balancer);
  const budget = new RetryBudget({
    ...(options.retry?.budgetRatio !== undefined ? { ratio: options.retry.budgetRatio } : {}),
    ...(options.retry?.budgetMinPerSecond !== undefined ? { minPerSecond: options.retry.budgetMinPerSecond } : {}),
    ...(options.retry?.budgetCap !== undefined ? { cap: options.retry.budgetCap } : {}),
  });
  // workers are assumed to take what the gateway takes (the same default, 4 MiB)
  const maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const deps: UpstreamDeps = {
    pool,
    health,
    balancer,
    budget,
    metrics,
    config: {
      ...(options.clusterSecret !== undefined ? { clusterSecret: options.clusterSecret } : {}),
      ...(options.workerApiKey !== undefined ? { workerApiKey: options.workerApiKey } : {}),
      maxAttempts,
      firstByteTimeoutMs: options.firstByteTimeoutMs ?? 60_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
      maxBodyBytes,
    },
  };
  const routeConfig: GenerationRouteConfig = {
    requestTimeoutMs: options.requestTimeoutMs ?? 600_000,
    resume: options.resume ?? true,
    affinityPrefixChars: options.balancer?.affinity ? (options.balancer.affinityPrefixChars ?? 512) : null,
    streamStallTimeoutMs: options.streamStallTimeoutMs ?? 60_000,
  };

  health.onStateChange((id, state) => metrics.setWorkerState(id, state));
  health.onEjection((id) => metrics.ejections.inc({ worker: id }));
  const registry = options.registry;
  // Worker id -> URL as the metrics last saw them. Each change touches only the workers that
  // joined, left or moved (the monitor reports state changes itself): the whole set on every
  // change, with a scan of the list per known id, made each registration cost O(n^2), and a
  // burst of n registrations (a fleet starting, a flood) O(n^3) on the event loop.
  let known = new Map<string, string>();
  registry.onChange((workers) => {
    health.sync(workers);
    const next = new Map(workers.map((w) => [w.id, w.url]));
    // A worker that left the registry keeps its in-flight requests (a drain) but leaves the metrics.
    for (const id of known.keys()) if (!next.has(id)) metrics.setWorkerState(id, null);
    for (const [id, url] of next) if (known.get(id) !== url) metrics.setWorkerState(id, health.state(id) ?? 'unhealthy');
    known = next;
  });
  await registry.start();
  health.sync(registry.list());
  health.start();

  const clientRequestTimeoutMs = options.clientRequestTimeoutMs ?? 30_000;
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: maxBodyBytes,
    // Fastify turns Node's request timeout off (0); without one a client sending a byte now
    // and then (slowloris) held its socket for ever. Node enforces it only with a headers
    // timeout no longer than it, and checks at the interval: the bound is the timeout plus
    // at most half of it.
    requestTimeout: clientRequestTimeoutMs,
    http: {
      headersTimeout: Math.min(60_000, clientRequestTimeoutMs),
      connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.round(clientRequestTimeoutMs / 2))),
    },
    requestIdHeader: 'x-request-id',
    genReqId: requestIds(),
    forceCloseConnections: 'idle',
    ...OPENAI_FRAMEWORK_ERRORS,
  }) as unknown as FastifyInstance;
  installErrorHandling(app);
  installJsonBodyParser(app);
  // after the first probes: a report it misses comes again within a probe period
  const loraSync = options.runtimeLoraUpdates
    ? new LoraSync(
        { health, pool, credentials, log: app.log, onCall: (action, outcome) => metrics.loraCalls.inc({ action, outcome }) },
        typeof options.runtimeLoraUpdates === 'object' ? options.runtimeLoraUpdates : {},
      )
    : null;
  if (loraSync) deps.adapterHolders = (model) => loraSync.holders(model);
  // before the routes' guards: a preflight carries no API key
  if (options.cors) installCors(app, options.cors);

  // Client connections, and those with a request past its headers (which close() lets
  // finish): a connection with none is idle or a client still sending headers.
  const connections = new Set<Socket>();
  let closing = false;
  const serving = new Map<Socket, number>();
  app.server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  app.addHook('onRequest', async (request, reply) => {
    const socket = request.raw.socket;
    serving.set(socket, (serving.get(socket) ?? 0) + 1);
    reply.raw.once('close', () => {
      const n = (serving.get(socket) ?? 1) - 1;
      if (n > 0) return void serving.set(socket, n);
      serving.delete(socket);
      // Its last answer is out: while closing, a keep-alive connection would otherwise hold
      // close() until the client's or the keep-alive timeout (72 s).
      if (closing) socket.destroy();
    });
  });

  const clientGuard = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const identity = options.auth.disabled === true ? `ip:${request.ip}` : keys.authenticate(request.headers.authorization);
    const floor = priorityFloors.get(identity);
    if (floor !== undefined) requestFloors.set(request, floor);
    if (limiter) {
      const verdict = limiter.take(identity);
      if (!verdict.allowed) {
        void reply.header('retry-after', String(verdict.retryAfterSeconds));
        throw new AutoGlmError('rate_limit_exceeded', `Rate limit reached; retry in ${verdict.retryAfterSeconds} s.`);
      }
    }
  };
  const clusterGuard = async (request: FastifyRequest): Promise<void> => {
    if (options.clusterSecret === undefined) return;
    const got = request.headers[CLUSTER_SECRET_HEADER];
    if (!secretsEqual(options.clusterSecret, typeof got === 'string' ? got : undefined))
      throw new AutoGlmError('invalid_api_key', 'Missing or wrong cluster secret.');
  };

  // As a worker does: every answer names its request, so a client's report can be traced
  // through the gateway's and the workers' logs (streams set it when they open).
  app.addHook('onSend', async (request, reply, payload) => {
    if (!reply.hasHeader('x-request-id')) void reply.header('x-request-id', request.id);
    return payload;
  });

  // Every answer on a client route, errors included (a 401 or 429 never reaches a handler).
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url;
    if (route !== undefined && CLIENT_ROUTES.has(route)) metrics.requests.inc({ route, status: String(reply.statusCode) });
  });

  for (const path of ['/v1/chat/completions', '/v1/completions'] as const) {
    app.post(path, { onRequest: clientGuard }, (request, reply) =>
      proxyGeneration(deps, routeConfig, path, request, reply, requestFloors.get(request)),
    );
  }
  // Everything else a worker serves: forwarded to any healthy worker (one that serves the
  // body's model), with retries.
  const forward = (path: string) => async (request: FastifyRequest, reply: FastifyReply) => {
    checkJsonShape(request.body);
    const model = (request.body as { model?: unknown } | null | undefined)?.model;
    const client = new AbortController();
    reply.raw.once('close', () => client.abort());
    const scope: RequestScope = {
      requestId: request.id,
      deadlineMs: performance.now() + routeConfig.requestTimeoutMs,
      failed: new Set(),
      attempts: 0,
      clientSignal: client.signal,
      estimatedTokens: 1,
      ...(typeof model === 'string' ? { model } : {}),
    };
    return forwardWhole(deps, scope, { path, method: 'POST', body: JSON.stringify(request.body ?? {}) }, reply);
  };
  app.post('/tokenize', { onRequest: clientGuard }, forward('/tokenize'));
  app.post('/detokenize', { onRequest: clientGuard }, forward('/detokenize'));
  // a list is quick to answer: a worker gets the first-byte timeout, at most MODELS_TIMEOUT_MS
  installModelsRoute(
    app,
    { health, pool, credentials, timeoutMs: Math.min(deps.config.firstByteTimeoutMs, MODELS_TIMEOUT_MS) },
    clientGuard,
  );

  if (loraSync) installLoraRoutes(app, loraSync, clientGuard);

  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/ready', async (_request, reply) => {
    const n = health.healthy().length;
    if (n === 0) return reply.code(503).send(new AutoGlmError('no_healthy_worker', 'No healthy worker.').toJSON());
    return { status: 'ready', healthyWorkers: n };
  });
  app.get('/metrics', async (_request, reply) => {
    for (const w of health.snapshot()) metrics.workerOutstanding.set({ worker: w.id }, balancer.outstanding(w.id).requests);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get('/cluster/workers', { onRequest: clientGuard }, async () => ({
    registry: registry.kind,
    // a failing registry keeps its last view: without this, an RBAC role removed or an etcd
    // gone would show only as workers that never change
    registry_error: registry.lastError ?? null,
    workers: health.snapshot().map((w) => ({ ...w, outstanding: balancer.outstanding(w.id) })),
    ...(loraSync ? { lora: loraSync.snapshot() } : {}),
  }));
  if (registry instanceof HeartbeatRegistry) {
    app.post('/cluster/register', { onRequest: clusterGuard }, async (request) => registry.heartbeat(request.body));
    app.post('/cluster/deregister', { onRequest: clusterGuard }, async (request) => ({ removed: registry.deregister(request.body) }));
  }

  return {
    app,
    health,
    balancer,
    metrics,
    async listen({ port, host }) {
      await app.listen({ port, host });
      const address = app.server.address();
      const actualPort = typeof address === 'object' && address ? address.port : port;
      return `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;
    },
    async close() {
      // Discovery stops first: the view in-flight streams retry and resume on is frozen.
      await registry.stop();
      closing = true;
      const closed = app.close();
      // Fastify closes idle keep-alive connections; a client that never finished sending its
      // headers is not idle to Node and kept close() (and SIGTERM) waiting for ever.
      for (const socket of connections) if (!serving.has(socket)) socket.destroy();
      // Streams in flight get closeTimeoutMs to finish, then are cut.
      const cut = setTimeout(() => app.server.closeAllConnections(), options.closeTimeoutMs ?? 20_000);
      try {
        await closed;
      } finally {
        clearTimeout(cut);
        loraSync?.stop();
        health.stop();
        pool.close();
      }
    },
  };
}

/** retry.maxAttempts, checked before discovery and probes start. */
function maxAttemptsOf(options: GatewayOptions): number {
  const n: unknown = options.retry?.maxAttempts ?? 3;
  if (typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_ATTEMPTS) return n;
  throw new AutoGlmError('invalid_request', `retry.maxAttempts must be an integer from 1 to ${MAX_ATTEMPTS}, got ${String(n)}.`, {
    param: 'retry.maxAttempts',
  });
}

/**
 * Request ids: a random per-gateway prefix and a counter, 16 hex digits like the server's.
 * Not randomBytes per request: that is a getrandom syscall on every request's path.
 */
function requestIds(): () => string {
  const prefix = randomBytes(4).toString('hex');
  let counter = 0;
  return () => {
    counter = (counter + 1) >>> 0;
    return `${prefix}${counter.toString(16).padStart(8, '0')}`;
  };
}

/** keyPriorities by the identity each key authenticates as; a key nobody can authenticate with is a mistake, refused. */
function keyPriorityFloors(
  byKey: ReadonlyMap<string, number> | undefined,
  identityOf: (key: string) => string | null,
): Map<string, number> {
  const floors = new Map<string, number>();
  for (const [key, priority] of byKey ?? []) {
    const identity = identityOf(key);
    if (identity === null) throw new AutoGlmError('invalid_request', 'keyPriorities names a key that is not in auth.apiKeys.');
    if (!Number.isSafeInteger(priority))
      throw new AutoGlmError('invalid_request', `keyPriorities: priority must be an integer (got ${priority}).`);
    floors.set(identity, priority);
  }
  return floors;
}
