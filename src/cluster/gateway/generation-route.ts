import { randomInt } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import { ClientSse } from './client-sse.js';
import { checkJsonShape } from '../../server/json-shape.js';
import type { GatewayMetrics } from './metrics.js';
import { PassThrough, relayStream } from './stream-relay.js';
import { givingUp, openWithRetries, retryRefusal, type RequestScope, type UpstreamDeps } from './upstream.js';

export interface GenerationRouteConfig {
  requestTimeoutMs: number;
  resume: boolean;
  affinityPrefixChars: number | null;
  /** A streaming client that takes nothing for this long is cut off. */
  streamStallTimeoutMs: number;
}

type Body = Record<string, unknown>;

/**
 * POST /v1/chat/completions and /v1/completions through the gateway. The body goes to a
 * worker unchanged except for a seed the gateway fixes when the client gave none, so a
 * retried or resumed request samples exactly what the first worker would have, and, for a
 * key with a priority floor, a priority raised to it.
 */
export async function proxyGeneration(
  deps: UpstreamDeps & { metrics: GatewayMetrics },
  config: GenerationRouteConfig,
  path: '/v1/chat/completions' | '/v1/completions',
  request: FastifyRequest,
  reply: FastifyReply,
  priorityFloor?: number,
): Promise<unknown> {
  const body = request.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new AutoGlmError('invalid_request', 'The request body must be a JSON object.');
  const b = body as Body;
  checkJsonShape(b);
  // Only an absent seed is fixed: any other value is the client's, for the worker to accept or refuse.
  const fixed: Body = b.seed === undefined || b.seed === null ? { ...b, seed: randomInt(0, 2 ** 31 - 1) } : { ...b };
  if (priorityFloor !== undefined) fixed.priority = flooredPriority(b.priority, priorityFloor);
  const stream = b.stream === true;
  const promptKey = path === '/v1/chat/completions' ? JSON.stringify(b.messages ?? '') : JSON.stringify(b.prompt ?? '');
  const maxTokens = Number(b.max_tokens ?? b.max_completion_tokens ?? 256) || 256;

  const client = new AbortController();
  const onClose = (): void => {
    if (!reply.raw.writableFinished) client.abort();
  };
  reply.raw.on('close', onClose);
  const scope: RequestScope = {
    requestId: request.id,
    deadlineMs: performance.now() + config.requestTimeoutMs,
    failed: new Set(),
    attempts: 0,
    clientSignal: client.signal,
    estimatedTokens: Math.ceil(promptKey.length / 4) + maxTokens,
    ...(typeof b.model === 'string' ? { model: b.model } : {}),
    ...(config.affinityPrefixChars !== null ? { affinityKey: promptKey.slice(0, config.affinityPrefixChars) } : {}),
  };
  const { metrics } = deps;
  metrics.inFlight.inc();
  // by base model: an HPA per model's Deployment scales on its own queue
  const queue = { model: deps.health.baseModelOf(scope.model) ?? 'unknown' };
  metrics.queueDepth.inc(queue);
  let queued = true;
  const dequeue = (): void => {
    if (queued) metrics.queueDepth.dec(queue);
    queued = false;
  };
  const startedMs = performance.now();
  deps.budget.onRequest();
  try {
    // Workers send headers only when the whole completion is done: the first-byte timeout is the deadline.
    if (!stream)
      return await forwardWhole(
        { ...deps, config: { ...deps.config, firstByteTimeoutMs: config.requestTimeoutMs } },
        scope,
        { path, method: 'POST', body: JSON.stringify(fixed) },
        reply,
      );
    const sse = new ClientSse(reply, request.id, { stallMs: config.streamStallTimeoutMs });
    try {
      await relayStream(deps, scope, sse, {
        path,
        body: fixed,
        resumable: config.resume && (b.n === undefined || b.n === null || b.n === 1) && overridesAreFaithful(b),
        clientWantsTokenIds: b.return_token_ids === true,
        clientWantsUsage: (b.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true,
        startedMs,
        onFirstToken: () => {
          dequeue();
          metrics.ttft.observe((performance.now() - startedMs) / 1000);
        },
      });
    } catch (e) {
      if (e instanceof PassThrough) return void reply.code(e.status).type('application/json').send(e.body);
      throw e;
    }
    return undefined;
  } finally {
    dequeue();
    metrics.inFlight.dec();
    metrics.duration.observe({ route: path }, (performance.now() - startedMs) / 1000);
    reply.raw.off('close', onClose);
  }
}

/**
 * A resumable stream goes upstream with stream_options.include_usage and return_token_ids
 * forced on. Client values a worker would refuse (`"stream_options": "x"`,
 * `"return_token_ids": "yes"`) would vanish under that rewrite; such a stream is forwarded
 * as it came instead, so the client gets the worker's 400.
 */
function overridesAreFaithful(b: Body): boolean {
  const isFlag = (v: unknown): boolean => v === undefined || v === null || typeof v === 'boolean';
  const options = b.stream_options;
  const optionsOk =
    options === undefined ||
    options === null ||
    (typeof options === 'object' && !Array.isArray(options) && isFlag((options as Body).include_usage));
  return optionsOk && isFlag(b.return_token_ids);
}

/**
 * An answer that arrives in one piece (non-streamed generations, /tokenize, /v1/models):
 * a failure anywhere, a body cut after the headers included, is the worker's and is retried
 * from the start elsewhere (same seed, same text). The worker's content type is passed on.
 */
export async function forwardWhole(
  deps: UpstreamDeps,
  scope: RequestScope,
  request: { path: string; method: 'GET' | 'POST'; body?: string },
  reply: FastifyReply,
): Promise<unknown> {
  for (;;) {
    const attempt = await openWithRetries(deps, scope, request);
    try {
      // The head is in (for a generation, the whole completion is ready): from here a body
      // that stalls is a worker going silent, not one still generating, so the idle
      // timeout bounds it instead of the first-byte timeout (the request's whole deadline).
      attempt.touch();
      const text = await attempt.response.text();
      return reply
        .code(attempt.response.status)
        .header('x-autoglm-worker', attempt.worker.id)
        .type(attempt.response.headers['content-type'] ?? 'application/json')
        .send(text);
    } catch {
      // Cut while reading the body: that worker failed; try again elsewhere.
      if (attempt.abortReason() === 'client') throw new AutoGlmError('request_cancelled', 'The client disconnected.');
      const cutByDeadline = attempt.abortReason() === 'deadline';
      if (!cutByDeadline) deps.health.reportFailure(attempt.worker.id, 'reset');
      scope.failed.add(attempt.worker.id);
      const refused = retryRefusal(deps, scope, 'body_reset', cutByDeadline);
      const failed = new AutoGlmError('upstream_error', `Worker ${attempt.worker.id} failed while answering.`);
      if (refused) throw givingUp(failed, refused, scope, cutByDeadline);
    } finally {
      attempt.finish();
    }
  }
}

/** A client's priority raised to its key's floor; a value that is no number is left for the worker to refuse. */
function flooredPriority(given: unknown, floor: number): unknown {
  if (given === undefined || given === null) return floor;
  return typeof given === 'number' ? Math.max(given, floor) : given;
}
