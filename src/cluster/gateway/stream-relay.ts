import { AutoGlmError } from '../../errors.js';
import type { FailureKind } from '../health-monitor.js';
import type { ClientSse } from './client-sse.js';
import { readSseBatches } from './sse-reader.js';
import { givingUp, openWithRetries, retryRefusal, type RequestScope, type UpstreamDeps } from './upstream.js';

type Json = Record<string, unknown>;
interface StreamChoice {
  index?: number;
  token_ids?: number[];
  finish_reason?: string | null;
  delta?: Record<string, unknown>;
  text?: string;
  logprobs?: unknown;
}

export interface RelayOptions {
  path: string;
  /** The client's body with the seed the gateway fixed (so a resume samples what the first worker would have). */
  body: Json;
  /** Resume a stream cut mid-way on another worker (only n = 1 streams can be resumed). */
  resumable: boolean;
  clientWantsTokenIds: boolean;
  clientWantsUsage: boolean;
  /** performance.now() when the gateway received the request: usage.timings count from it. */
  startedMs: number;
  onFirstToken(): void;
}

export interface RelayOutcome {
  resumes: number;
}

/**
 * Relays one streamed generation to the client and keeps it whole across worker failures.
 * Upstream, the gateway always asks for `return_token_ids` and usage, and remembers every
 * token id it has passed on. When the worker dies mid-stream, another worker gets the same
 * body plus `resume_token_ids` = those ids and continues from exactly there (sampling is a
 * function of (seed, position)); its opening role chunk is dropped, ids and timestamps are
 * rewritten to the first attempt's, so the client sees one unbroken stream with one usage.
 */
export async function relayStream(deps: UpstreamDeps, scope: RequestScope, sse: ClientSse, options: RelayOptions): Promise<RelayOutcome> {
  const baseResume = Array.isArray(options.body.resume_token_ids) ? (options.body.resume_token_ids as number[]) : [];
  const upstreamBody: Json = options.resumable
    ? { ...options.body, stream: true, stream_options: { include_usage: true }, return_token_ids: true }
    : { ...options.body };
  const emitted: number[] = [];
  let lastChunkIds: number[] = [];
  let finished = false;
  let resumes = 0;
  let skip = 0;
  let head: { id?: unknown; created?: unknown } | null = null;
  let sawFirstToken = false;
  let firstTokenMs: number | null = null;
  let openedRole = false;

  for (;;) {
    const resuming = emitted.length > 0 || finished;
    if (resuming) {
      // Finished but cut before usage/[DONE]: regenerate the last chunk to get the end, and drop it.
      const keep = finished ? emitted.length - lastChunkIds.length : emitted.length;
      skip = emitted.length - keep;
      const resumeIds = [...baseResume, ...emitted.slice(0, keep)];
      if (resumeIds.length > 0) upstreamBody.resume_token_ids = resumeIds;
      else delete upstreamBody.resume_token_ids;
    }
    let attempt;
    try {
      attempt = await openWithRetries(deps, scope, { path: options.path, method: 'POST', body: JSON.stringify(upstreamBody) });
    } catch (e) {
      if (!sse.hasStarted) throw e;
      await endWithError(sse, e);
      if (resuming) deps.metrics.failovers.inc({ outcome: 'failed' });
      return { resumes };
    }
    if (resuming) {
      resumes++;
      deps.metrics.failovers.inc({ outcome: 'resumed' });
    }
    const { response } = attempt;
    sse.workerId ??= attempt.worker.id;
    if (response.status !== 200) {
      // A client error (4xx) from the worker: pass it on (in-band if the stream is under way).
      const text = await response.text().catch(() => '');
      attempt.finish();
      if (!sse.hasStarted) throw new PassThrough(response.status, text);
      await endWithError(
        sse,
        new AutoGlmError('upstream_error', `Resume failed: worker answered HTTP ${response.status}: ${text.slice(0, 200)}`),
      );
      return { resumes };
    }

    let failure: FailureKind | null = null;
    let done = false;
    try {
      await readSseBatches(response.body, (batch) => {
        attempt.touch();
        // After [DONE] the client is answered; reading on to the end of the response lets
        // its keep-alive connection go back to the pool instead of being torn down.
        if (done) return undefined;
        for (const data of batch) {
          if (data === '[DONE]') {
            done = true;
            break;
          }
          const msg = JSON.parse(data) as Json;
          if (msg.error !== undefined) {
            // The worker failed mid-generation and said so in-band.
            if (options.resumable) {
              failure = 'status';
              return 'stop';
            }
            sse.queue(msg);
            continue;
          }
          if (!options.resumable) {
            if (!sawFirstToken) {
              sawFirstToken = true;
              options.onFirstToken();
            }
            sse.queue(data);
            continue;
          }
          const choices = (msg.choices ?? []) as StreamChoice[];
          const choice = choices[0];
          if (!choice) {
            // The usage chunk (include_usage was forced upstream).
            if (options.clientWantsUsage) sse.queue(withGatewayTimings(rewrite(msg, head), options.startedMs, firstTokenMs));
            continue;
          }
          const ids = choice.token_ids ?? [];
          head ??= { id: msg.id, created: msg.created };
          if (choice.delta?.role !== undefined && ids.length === 0) {
            // Chat's opening role chunk: the client gets one, whichever worker it came from.
            if (openedRole) continue;
            openedRole = true;
          }
          if (skip > 0) {
            skip -= ids.length;
            if (choice.finish_reason) finished = true;
            continue;
          }
          emitted.push(...ids);
          lastChunkIds = ids;
          if (choice.finish_reason) finished = true;
          attempt.ticket.progress(ids.length);
          if (!sawFirstToken && ids.length > 0) {
            sawFirstToken = true;
            firstTokenMs = performance.now();
            options.onFirstToken();
          }
          if (!options.clientWantsTokenIds) delete choice.token_ids;
          if (!options.clientWantsUsage) delete msg.usage;
          // A chunk that carried only the ids the gateway asked for (text held back while a
          // tool call or a possible stop string completes) would reach the client empty, which
          // a worker asked directly never sends.
          if (!options.clientWantsTokenIds && carriesNothing(choice) && msg.usage == null) continue;
          sse.queue(rewrite(msg, head));
        }
        // One client write per upstream read; the last one also ends the response.
        if (done) {
          sse.done();
          return undefined;
        }
        const drained = sse.flush();
        if (drained === undefined) return undefined;
        // A slow client's full socket pauses the worker's body: that silence is the
        // client's, so it must not run out the worker's idle timeout (which would blame the
        // worker and cut and resume a healthy stream).
        attempt.pauseIdle();
        return drained.then(() => attempt.touch());
      });
      if (!done && failure === null) failure = 'reset';
    } catch {
      // A failure after [DONE] (while reading the response's end) costs the client nothing.
      if (!done) {
        const why = attempt.abortReason();
        if (why === 'client') {
          attempt.finish();
          return { resumes };
        }
        failure = why === 'timeout' || why === 'deadline' ? 'timeout' : 'reset';
      }
    }
    if (failure === null) {
      attempt.finish();
      deps.health.reportSuccess(attempt.worker.id);
      sse.done();
      return { resumes };
    }
    attempt.abort();
    attempt.finish();
    // Cut by the request's deadline: a long generation, not a sick worker.
    if (attempt.abortReason() !== 'deadline') deps.health.reportFailure(attempt.worker.id, failure);
    scope.failed.add(attempt.worker.id);
    if (sse.closed) return { resumes };
    const failed = new AutoGlmError(
      'upstream_error',
      `Worker ${attempt.worker.id} failed${sse.hasStarted ? ' mid-stream' : ''} (${failure}).`,
    );
    if (!options.resumable && sse.hasStarted) {
      await endWithError(sse, failed);
      return { resumes };
    }
    const cutByDeadline = attempt.abortReason() === 'deadline';
    const refused = retryRefusal(deps, scope, `stream_${failure}`, cutByDeadline);
    if (refused) {
      const error = givingUp(failed, refused, scope, cutByDeadline);
      if (!sse.hasStarted) throw error;
      await endWithError(sse, error);
      return { resumes };
    }
  }
}

/** No text, no delta field (a tool call, a role), no finish and no logprobs: nothing for the client. */
function carriesNothing(choice: StreamChoice): boolean {
  if (choice.finish_reason != null || choice.logprobs != null) return false;
  return choice.delta !== undefined ? Object.keys(choice.delta).length === 0 : (choice.text ?? '') === '';
}

/** A worker's 4xx answer, passed to the client verbatim. */
export class PassThrough extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upstream HTTP ${status}`);
  }
}

/**
 * The usage chunk's timings (a worker's extension: time to first token, time per output
 * token, end to end) as the client saw them through the gateway: from the gateway's arrival
 * time, across every worker the stream ran on. A resumed stream's last worker only saw its
 * own part.
 */
function withGatewayTimings(msg: Json, startedMs: number, firstTokenMs: number | null): Json {
  const usage = msg.usage as { completion_tokens?: number; timings?: unknown } | undefined;
  if (usage?.timings === undefined) return msg;
  const e2e = performance.now() - startedMs;
  const ttft = firstTokenMs === null ? null : firstTokenMs - startedMs;
  const tokens = usage.completion_tokens ?? 0;
  usage.timings = {
    time_to_first_token_ms: ttft,
    time_per_output_token_ms: ttft !== null && tokens > 1 ? (e2e - ttft) / (tokens - 1) : 0,
    e2e_ms: e2e,
  };
  return msg;
}

function rewrite(msg: Json, head: { id?: unknown; created?: unknown } | null): Json {
  if (head) {
    msg.id = head.id;
    msg.created = head.created;
  }
  return msg;
}

async function endWithError(sse: ClientSse, e: unknown): Promise<void> {
  const err = e instanceof AutoGlmError ? e : new AutoGlmError('upstream_error', 'The stream failed.', { cause: e });
  await sse.send(err.toJSON());
  sse.done();
}
