import type { FastifyReply, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import type { InferenceEngine } from '../../engine/types.js';
import { runChoices, type ChoiceChunk, type ChoiceOutcome, type ChoiceSpec } from '../generation.js';
import { SseStream } from '../sse.js';
import type { RouteContext } from './context.js';

export interface UsageBody {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  /** OpenAI's: chat completions read by a reasoning parser count the tokens of the reasoning. */
  completion_tokens_details?: { reasoning_tokens: number };
  /**
   * An extension (OpenAI clients keep unknown fields): the request's latency as the server
   * saw it, with vLLM's metric definitions, in ms from the request's arrival. Across
   * several choices: the first token of any, decode time and tokens summed, the last end.
   */
  timings: TimingsBody;
}

export interface TimingsBody {
  /** Arrival to the first generated token (null if none was generated). */
  time_to_first_token_ms: number | null;
  /** Mean time per output token after the first: decode time / (tokens - 1); 0 for one token. */
  time_per_output_token_ms: number;
  /** Arrival to the last token. */
  e2e_ms: number;
}

/** How one endpoint shapes chunks and the final body; the flow around it is shared. */
export interface ResponseShape {
  /**
   * The streamed object for one chunk (chat also sends a role chunk first: `opening`), or
   * null when it would carry nothing the client asked for (text held back as a possible tool call).
   */
  chunk(c: ChoiceChunk): Promise<object | null>;
  /**
   * Without streaming, each chunk as it becomes final, before final() gets the outcomes:
   * chat reads reasoning and tool calls piece by piece, as it does for a stream.
   */
  observe?(c: ChoiceChunk): void;
  opening?(index: number): object;
  /** A streamed object carrying only usage (stream_options.include_usage). */
  usageChunk(usage: UsageBody): object | Promise<object>;
  final(outcomes: ChoiceOutcome[], usage: UsageBody): Promise<object>;
}

export interface GenerationPlan {
  engine: InferenceEngine;
  choices: ChoiceSpec[];
  stream: boolean;
  includeUsage: boolean;
  withLogprobs: boolean;
  /** Prompt token count per distinct prompt (usage counts each prompt once, not per choice). */
  promptTokens: number[];
  arrivalMs: number;
}

/**
 * Runs a plan and answers: SSE chunks then `[DONE]`, or one JSON body. The request is
 * registered with the lifecycle (so a drain waits for it) and cancelled when the client
 * goes away, which frees its KV blocks in the engine.
 */
export async function serveGeneration(
  ctx: RouteContext,
  request: FastifyRequest,
  reply: FastifyReply,
  plan: GenerationPlan,
  shape: ResponseShape,
): Promise<object | undefined> {
  const { controller, release } = ctx.lifecycle.admit();
  const onClose = (): void => {
    if (!reply.raw.writableFinished) controller.abort(new AutoGlmError('request_cancelled', 'The client disconnected.'));
  };
  reply.raw.on('close', onClose);
  // The client may have gone while its prompt was tokenized (in the pool, that takes a
  // while): 'close' fired before anyone listened, so look, rather than generate for no one.
  if (request.raw.socket?.destroyed) onClose();
  const sse = plan.stream
    ? new SseStream(reply, request.id, { stallMs: ctx.limits.streamStallTimeoutMs, signal: controller.signal })
    : null;
  const opened = new Set<number>();
  try {
    const outcomes = await runChoices({
      engine: plan.engine,
      choices: plan.choices,
      signal: controller.signal,
      withLogprobs: plan.withLogprobs,
      startTimer: () => ctx.metrics.startGeneration(plan.arrivalMs),
      onChunk: sse
        ? async (c) => {
            if (shape.opening && !opened.has(c.index)) {
              opened.add(c.index);
              await sse.send(shape.opening(c.index));
            }
            const chunk = await shape.chunk(c);
            if (chunk !== null) await sse.send(chunk);
          }
        : shape.observe?.bind(shape),
    });
    const usage = usageOf(outcomes, plan);
    if (!sse) return await shape.final(outcomes, usage);
    if (plan.includeUsage) await sse.send(await shape.usageChunk(usage));
    sse.done();
    return undefined;
  } catch (e) {
    if (controller.signal.aborted && isCancelled(controller.signal.reason)) {
      const reason = controller.signal.reason as AutoGlmError;
      request.log.info({ reason: reason.code }, 'generation cancelled');
      const clientGone = reason.code === 'request_cancelled';
      if (!sse?.hasStarted && !clientGone) throw reason;
      if (!sse?.hasStarted) reply.hijack();
      reply.raw.destroy();
      return undefined;
    }
    if (sse?.hasStarted) {
      // Headers are gone: report in-band the way vLLM does, then end the stream.
      const err = e instanceof AutoGlmError ? e : new AutoGlmError('internal_error', 'Generation failed.', { cause: e });
      request.log.error({ err: e }, 'generation failed mid-stream');
      await sse.send(err.toJSON());
      sse.done();
      return undefined;
    }
    throw e;
  } finally {
    reply.raw.off('close', onClose);
    release();
  }
}

function isCancelled(reason: unknown): boolean {
  return reason instanceof AutoGlmError && (reason.code === 'request_cancelled' || reason.code === 'server_draining');
}

/** Outcomes are in the plan's choice order (runChoices keeps it). */
function usageOf(outcomes: ChoiceOutcome[], plan: GenerationPlan): UsageBody {
  const completion = outcomes.reduce((s, o) => s + o.usage.completionTokens, 0);
  const prompt = plan.promptTokens.reduce((s, n) => s + n, 0);
  // Cached tokens: per prompt, the most any of its choices reused (they share the prompt,
  // which usage counts once), summed over the prompts.
  const cachedPerPrompt = plan.promptTokens.map(() => 0);
  outcomes.forEach((o, k) => {
    const p = plan.choices[k]!.promptIndex;
    cachedPerPrompt[p] = Math.max(cachedPerPrompt[p]!, o.usage.cachedPromptTokens);
  });
  const cached = cachedPerPrompt.reduce((s, n) => s + n, 0);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
    timings: timingsOf(outcomes),
  };
}

function timingsOf(outcomes: ChoiceOutcome[]): TimingsBody {
  const firsts = outcomes.map((o) => o.timing.timeToFirstTokenMs).filter((t): t is number => t !== null);
  const decodeMs = outcomes.reduce((s, o) => s + o.timing.decodeMs, 0);
  const decodeTokens = outcomes.reduce((s, o) => s + o.timing.decodeTokens, 0);
  return {
    time_to_first_token_ms: firsts.length > 0 ? Math.min(...firsts) : null,
    time_per_output_token_ms: decodeTokens > 0 ? decodeMs / decodeTokens : 0,
    e2e_ms: Math.max(0, ...outcomes.map((o) => o.timing.e2eMs)),
  };
}
