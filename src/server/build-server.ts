import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { AutoGlmError } from '../errors.js';
import { checkJsonShape } from './json-shape.js';
import { installCors } from './cors.js';
import { ApiKeyChecker, secretsEqual } from './auth.js';
import { installErrorHandling, OPENAI_FRAMEWORK_ERRORS } from './http-errors.js';
import { installJsonBodyParser } from './json-body.js';
import { ServerLifecycle } from './lifecycle.js';
import { ServerMetrics } from './metrics.js';
import { resolveLimits, type ServerOptions } from './options.js';
import { PromptTokenizer } from './prompt-tokenizer.js';
import { RateLimiter } from './rate-limiter.js';
import { makeModelChecker, type RouteContext } from './routes/context.js';
import { LORA_UPDATE_ROUTES, ROUTES, type RouteGuard } from './routes/table.js';

export const CLUSTER_SECRET_HEADER = 'x-autoglm-cluster-secret';

export interface AutoGlmServer {
  readonly app: FastifyInstance;
  readonly lifecycle: ServerLifecycle;
  readonly metrics: ServerMetrics;
  /** True while long prompts go to the tokenizer worker pool (false: none configured, or it failed and was retired). */
  readonly tokenizerPooled: boolean;
  /** Starts listening; resolves with the base URL (e.g. http://127.0.0.1:8000). */
  listen(options: { port: number; host: string }): Promise<string>;
  /** Refuses new requests (503), lets running ones finish for up to `timeoutMs`, then cancels the rest. */
  drain(timeoutMs: number): Promise<number>;
  /** Stops listening and the tokenizer pool. The engine is the caller's to close. */
  close(): Promise<void>;
}

/** The OpenAI-compatible server around one engine: fastify, route table, guards, metrics. */
export function buildServer(options: ServerOptions): AutoGlmServer {
  const limits = resolveLimits(options.limits);
  const lifecycle = new ServerLifecycle(options.engine);
  const modelName = (): string => options.servedModelName ?? lifecycle.maybeEngine()?.modelName ?? 'loading';
  const metrics = new ServerMetrics(() => lifecycle.maybeEngine()?.stats() ?? null, modelName);
  const tokenizer = new PromptTokenizer(options.tokenizerPool);
  const keys = new ApiKeyChecker(options.auth.apiKeys);
  const limiter = options.rateLimit ? new RateLimiter(options.rateLimit) : null;

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.maxBodyBytes,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomBytes(8).toString('hex'),
    // Keep-alive sockets must not hold a drain open forever.
    forceCloseConnections: 'idle',
    ...OPENAI_FRAMEWORK_ERRORS,
    // verbose: a failed anyOf carries its schema, whose description names the accepted forms (http-errors.ts)
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false, verbose: true } },
    ...(options.tls ? { https: { key: options.tls.key, cert: options.tls.cert } } : {}),
  }) as unknown as FastifyInstance;
  installErrorHandling(app);
  installJsonBodyParser(app);
  // before the routes and their guards: a preflight carries no API key
  if (options.cors) installCors(app, options.cors);
  tokenizer.onPoolFailure = (err) => app.log.warn({ err }, 'tokenizer pool failed; tokenizing inline from now on');

  /** The caller's identity (for the rate limiter); throws invalid_api_key for wrong or missing credentials. */
  const identify = (request: FastifyRequest): string => {
    if (options.clusterSecret !== undefined) {
      const got = request.headers[CLUSTER_SECRET_HEADER];
      if (!secretsEqual(options.clusterSecret, typeof got === 'string' ? got : undefined))
        throw new AutoGlmError('invalid_api_key', 'This worker accepts only gateway traffic (missing or wrong cluster secret).');
    }
    return options.auth.disabled === true ? `ip:${request.ip}` : keys.authenticate(request.headers.authorization);
  };

  const ctx: RouteContext = {
    lifecycle,
    metrics,
    limits,
    tokenizer,
    toolCallParser: options.toolCallParser ?? 'auto',
    reasoningParser: options.reasoningParser ?? 'auto',
    log: app.log,
    modelName,
    modelAliases: options.modelAliases ?? [],
    checkModel: makeModelChecker(lifecycle, modelName, options.modelAliases ?? []),
    instanceId: randomBytes(8).toString('hex'),
    runtimeLoras: options.allowRuntimeLoraUpdates ? new Map() : null,
    trusted: (request) => {
      try {
        identify(request);
        return true;
      } catch {
        return false;
      }
    },
  };

  /** Runs before the body is read, so refused requests cost no parsing. */
  const guard = (kind: RouteGuard) => async (request: FastifyRequest, reply: FastifyReply) => {
    if (kind === 'open') return;
    if (lifecycle.draining) throw new AutoGlmError('server_draining', 'The server is shutting down; retry on another instance.');
    const identity = identify(request);
    if (!lifecycle.ready) lifecycle.engine(); // throws not_ready while loading
    if (limiter) {
      const verdict = limiter.take(identity);
      if (!verdict.allowed) {
        void reply.header('retry-after', String(verdict.retryAfterSeconds));
        throw new AutoGlmError('rate_limit_exceeded', `Rate limit reached; retry in ${verdict.retryAfterSeconds} s.`);
      }
    }
    if (kind === 'generation' && lifecycle.pending >= limits.maxPendingRequests)
      throw new AutoGlmError('queue_full', 'The server is at capacity; retry later.');
  };

  for (const route of options.allowRuntimeLoraUpdates ? [...ROUTES, ...LORA_UPDATE_ROUTES] : ROUTES) {
    app.route({
      method: route.method,
      url: route.url,
      ...(route.schema ? { schema: route.schema } : {}),
      onRequest: guard(route.guard),
      // before the schema and the handler: nesting that would overflow the stack where the
      // body is sized or rendered (a 500 otherwise) is the client's 400, named
      ...(route.method === 'POST' ? { preValidation: async (request: FastifyRequest) => checkJsonShape(request.body) } : {}),
      handler: (request, reply) => route.handler(ctx, request, reply),
    });
  }
  app.addHook('onSend', async (request, reply, payload) => {
    void reply.header('x-request-id', request.id);
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.observeHttp(request.routeOptions.url ?? 'unmatched', reply.statusCode);
  });

  return {
    app,
    lifecycle,
    metrics,
    get tokenizerPooled() {
      return tokenizer.pooled;
    },
    async listen({ port, host }) {
      await app.listen({ port, host });
      const address = app.server.address();
      const actualPort = typeof address === 'object' && address ? address.port : port;
      const hostForUrl = host.includes(':') ? `[${host}]` : host;
      return `${options.tls ? 'https' : 'http'}://${hostForUrl}:${actualPort}`;
    },
    drain: (timeoutMs) => lifecycle.drain(timeoutMs),
    async close() {
      await app.close();
      await tokenizer.close();
    },
  };
}
