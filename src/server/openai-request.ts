import { AutoGlmError } from '../errors.js';
import type { GenerateRequest, ResponseFormat, SamplingParams } from '../engine/types.js';
import type { ServerLimits } from './options.js';
import { withoutUndefined } from '../without-undefined.js';
import { structuredFormatOf, type StructuredOutputFields } from './structured-outputs.js';

/** The body fields chat and completions share (after schema validation). */
export interface CommonBody extends StructuredOutputFields {
  model: string;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  n?: number | null;
  max_tokens?: number | null;
  /** vLLM's: at least this many tokens before EOS, a stop token id or a stop string may end the output. */
  min_tokens?: number | null;
  /** vLLM's: under --scheduling-policy priority, lower values are admitted first. */
  priority?: number | null;
  /** vLLM's: only the last N prompt tokens are used (left truncation, after the chat template). */
  truncate_prompt_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  repetition_penalty?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  seed?: number | null;
  logit_bias?: Record<string, number> | null;
  /** Shape checked by the route schema (schemas.ts); the JSON Schema itself by the engine. */
  response_format?: ResponseFormatBody | null;
  stop?: string | string[] | null;
  /** vLLM's: the stop string that ended the output stays at its end. */
  include_stop_str_in_output?: boolean | null;
  stop_token_ids?: number[] | null;
  ignore_eos?: boolean | null;
  return_token_ids?: boolean | null;
  resume_token_ids?: number[] | null;
  /** vLLM's: each prompt token's logprob and rank, with this many alternatives (not with stream). */
  prompt_logprobs?: number | null;
}

/** OpenAI's response_format, as the route schema lets it through. */
export type ResponseFormatBody =
  | { type: 'text' }
  | { type: 'json_object' }
  | {
      type: 'json_schema';
      json_schema: { name: string; schema: Record<string, unknown> | boolean; strict?: boolean | null; description?: string };
    };

/** What a handler needs to build one GenerateRequest per choice. */
export interface CommonParams {
  stream: boolean;
  includeUsage: boolean;
  n: number;
  requestedMaxTokens: number | undefined;
  minTokens: number | undefined;
  priority: number | undefined;
  /** Prompts longer than this keep their last this-many tokens. */
  truncatePromptTokens: number | undefined;
  sampling: SamplingParams;
  stop: string[] | undefined;
  includeStopStrInOutput: boolean;
  stopTokenIds: number[] | undefined;
  ignoreEos: boolean;
  returnTokenIds: boolean;
  resumeTokenIds: number[] | undefined;
  /** Output enforced token by token (response_format or vLLM's guided_* / structured_outputs; undefined: free text). */
  responseFormat: ResponseFormat | undefined;
  /** vLLM's prompt_logprobs: alternatives per prompt token (undefined: none asked for). */
  promptLogprobs: number | undefined;
}

export function parseCommon(body: CommonBody, maxTokens: number | null | undefined, limits: ServerLimits): CommonParams {
  const n = body.n ?? 1;
  if (n > limits.maxChoices) throw new AutoGlmError('invalid_request', `n must be at most ${limits.maxChoices}.`, { param: 'n' });
  if (body.stream_options && !body.stream)
    throw new AutoGlmError('invalid_request', 'stream_options is only allowed when stream is true.', { param: 'stream_options' });
  const resume = body.resume_token_ids ?? undefined;
  // as vLLM: they come with the whole answer, which a stream does not have
  if (body.prompt_logprobs != null && body.stream)
    throw new AutoGlmError('invalid_request', 'prompt_logprobs are not available when stream is true.', { param: 'prompt_logprobs' });
  if (resume && resume.length > 0 && n !== 1)
    throw new AutoGlmError('invalid_request', 'resume_token_ids requires n = 1.', { param: 'resume_token_ids' });
  const topK = body.top_k ?? undefined;
  const sampling: SamplingParams = withoutUndefined({
    temperature: body.temperature ?? undefined,
    topP: body.top_p ?? undefined,
    // vLLM's convention: -1 and 0 both mean "no top-k".
    topK: topK !== undefined && topK > 0 ? topK : undefined,
    minP: body.min_p ?? undefined,
    repetitionPenalty: body.repetition_penalty ?? undefined,
    presencePenalty: body.presence_penalty ?? undefined,
    frequencyPenalty: body.frequency_penalty ?? undefined,
    seed: body.seed ?? undefined,
    logitBias: body.logit_bias ?? undefined,
  });
  const stop = body.stop === null || body.stop === undefined ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  return {
    stream: body.stream === true,
    includeUsage: body.stream === true && body.stream_options?.include_usage === true,
    n,
    requestedMaxTokens: maxTokens ?? undefined,
    minTokens: body.min_tokens ?? undefined,
    priority: body.priority ?? undefined,
    truncatePromptTokens: body.truncate_prompt_tokens ?? undefined,
    sampling,
    stop: stop && stop.length > 0 ? stop : undefined,
    includeStopStrInOutput: body.include_stop_str_in_output === true,
    stopTokenIds: body.stop_token_ids ?? undefined,
    ignoreEos: body.ignore_eos === true,
    returnTokenIds: body.return_token_ids === true,
    resumeTokenIds: resume && resume.length > 0 ? resume : undefined,
    responseFormat: structuredFormatOf(body, responseFormatOf(body.response_format)),
    promptLogprobs: body.prompt_logprobs ?? undefined,
  };
}

/**
 * The engine's form of response_format. json_schema's `strict` is accepted and changes
 * nothing: the schema is always enforced, and one this server cannot enforce is refused
 * (by the engine, naming the keyword) rather than loosened.
 */
function responseFormatOf(format: ResponseFormatBody | null | undefined): ResponseFormat | undefined {
  if (!format || format.type === 'text') return undefined;
  if (format.type === 'json_object') return { type: 'json_object' };
  return { type: 'json_schema', schema: format.json_schema.schema };
}

/** A prompt's last `keep` tokens (vLLM's truncate_prompt_tokens); the prompt itself when it is no longer. */
export function truncatedPrompt(prompt: number[], keep: number | undefined): number[] {
  return keep !== undefined && prompt.length > keep ? prompt.slice(prompt.length - keep) : prompt;
}

/**
 * Checks the prompt against the context window and limits, and picks max_tokens: what the
 * client asked for, else whatever the context leaves (capped by the server's limit).
 */
export function budgetTokens(options: {
  promptTokens: number;
  resumedTokens: number;
  requestedMaxTokens: number | undefined;
  contextLength: number;
  limits: ServerLimits;
  promptParam: string;
  maxTokensParam: string;
}): number {
  const { promptTokens, requestedMaxTokens, contextLength, limits } = options;
  if (promptTokens === 0) throw new AutoGlmError('invalid_request', 'The prompt is empty.', { param: options.promptParam });
  const maxPrompt = Math.min(limits.maxPromptTokens ?? contextLength, contextLength);
  if (promptTokens > maxPrompt || promptTokens >= contextLength)
    throw new AutoGlmError(
      'context_length_exceeded',
      `The prompt has ${promptTokens} tokens; this server accepts at most ${Math.min(maxPrompt, contextLength - 1)}.`,
      { param: options.promptParam },
    );
  const completionCap = limits.maxCompletionTokens ?? contextLength;
  if (requestedMaxTokens !== undefined && requestedMaxTokens > completionCap)
    throw new AutoGlmError('invalid_request', `${options.maxTokensParam} must be at most ${completionCap}.`, {
      param: options.maxTokensParam,
    });
  // Resumed tokens sit in the context and count towards max_tokens (they were generated).
  const room = contextLength - promptTokens;
  const maxTokens = requestedMaxTokens ?? Math.min(room, completionCap);
  if (maxTokens > room)
    throw new AutoGlmError(
      'context_length_exceeded',
      `This model's maximum context length is ${contextLength} tokens; the prompt has ${promptTokens} and ${options.maxTokensParam} asks for ${maxTokens}.`,
      { param: options.promptParam },
    );
  if (options.resumedTokens >= maxTokens)
    throw new AutoGlmError('invalid_request', `resume_token_ids already holds ${options.maxTokensParam} tokens.`, {
      param: 'resume_token_ids',
    });
  return maxTokens;
}

/** The GenerateRequest of choice `i`: choices beyond the first get seed + i so they differ. */
export function choiceRequest(
  params: CommonParams,
  prompt: number[],
  maxTokens: number,
  choiceIndex: number,
  extra: { logprobs: boolean; topLogprobs: number; requestId: string; chatTemplateKwargs?: Record<string, unknown> },
): GenerateRequest & { prompt: number[] } {
  const seed = params.sampling.seed;
  return withoutUndefined({
    prompt,
    maxTokens,
    minTokens: params.minTokens,
    priority: params.priority,
    sampling: { ...params.sampling, ...(seed !== undefined && choiceIndex > 0 ? { seed: seed + choiceIndex } : {}) },
    stop: params.stop,
    includeStopStrInOutput: params.includeStopStrInOutput || undefined,
    stopTokenIds: params.stopTokenIds,
    ignoreEos: params.ignoreEos || undefined,
    logprobs: extra.logprobs || undefined,
    topLogprobs: extra.logprobs ? extra.topLogprobs : undefined,
    promptLogprobs: params.promptLogprobs,
    resumeTokenIds: params.resumeTokenIds,
    responseFormat: params.responseFormat,
    requestId: extra.requestId,
  }) as GenerateRequest & { prompt: number[] };
}
