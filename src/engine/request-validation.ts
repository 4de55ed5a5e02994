/**
 * Validates a GenerateRequest's numbers before any GPU work, so that a bad request is a
 * typed 400 naming the parameter, never a failure inside a step that other requests share.
 */
import { checkTemplateKwargs } from './tokenizer/template-kwargs.js';
import { AutoGlmError } from '../errors.js';
import type { RowLogitBias } from '../kernels/logit-bias.js';
import { MAX_CHOICE_LENGTH, MAX_CHOICES, MAX_CHOICES_TOTAL_LENGTH, MAX_PATTERN_LENGTH } from './constraints/regex.js';
import { TOOL_CALL_SYNTAXES, type GenerateRequest, type SamplingParams } from './types.js';

/** Sampling defaults a model folder may set (generation_config.json). */
export interface SamplingDefaults {
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
}

export interface ResolvedSampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  frequencyPenalty: number;
  presencePenalty: number;
  /** Explicit or drawn at admission; either way the draw is a function of (seed, position). */
  seed: number;
  seeded: boolean;
  /** [token, bias] pairs by token id, or undefined for none (see validateLogitBias). */
  logitBias: RowLogitBias | undefined;
}

/** Most tokens one request may bias: each is a GPU write per step. */
export const MAX_LOGIT_BIAS_TOKENS = 1024;
/** OpenAI's range for a bias. */
const MAX_ABS_LOGIT_BIAS = 100;

function invalid(param: string, message: string): AutoGlmError {
  return new AutoGlmError('invalid_request', message, { param });
}

function check(param: string, value: number | undefined, ok: (v: number) => boolean, rule: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) throw invalid(param, `${param} must be ${rule}, got ${value}`);
}

export function validateSampling(p: SamplingParams = {}): void {
  check('temperature', p.temperature, (v) => v >= 0 && v <= 100, 'between 0 and 100');
  check('top_k', p.topK, (v) => Number.isInteger(v) && v >= -1, 'an integer >= -1 (-1 or 0 disables it)');
  check('top_p', p.topP, (v) => v > 0 && v <= 1, 'in (0, 1]');
  check('min_p', p.minP, (v) => v >= 0 && v <= 1, 'in [0, 1]');
  check('repetition_penalty', p.repetitionPenalty, (v) => v > 0 && v <= 10, 'in (0, 10]');
  check('frequency_penalty', p.frequencyPenalty, (v) => v >= -2 && v <= 2, 'between -2 and 2');
  check('presence_penalty', p.presencePenalty, (v) => v >= -2 && v <= 2, 'between -2 and 2');
  check('seed', p.seed, (v) => Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER, 'a non-negative integer below 2^53');
}

/**
 * The sampling kernel holds top_k in a u32 and rejects more, mid-step, failing every request
 * in the batch. A top_k past any vocabulary keeps every token, which is what 0 means.
 */
const KERNEL_MAX_TOP_K = 0xffffffff;

export function resolveSampling(p: SamplingParams = {}, defaults: SamplingDefaults = {}, drawSeed: () => number): ResolvedSampling {
  validateSampling(p);
  const temperature = p.temperature ?? defaults.temperature ?? 1;
  const topK = p.topK ?? defaults.topK ?? 0;
  return {
    temperature,
    topK: topK < 0 || topK > KERNEL_MAX_TOP_K ? 0 : topK,
    topP: p.topP ?? defaults.topP ?? 1,
    minP: p.minP ?? defaults.minP ?? 0,
    repetitionPenalty: p.repetitionPenalty ?? defaults.repetitionPenalty ?? 1,
    frequencyPenalty: p.frequencyPenalty ?? 0,
    presencePenalty: p.presencePenalty ?? 0,
    seed: p.seed ?? drawSeed(),
    seeded: p.seed !== undefined,
    logitBias: logitBiasEntries(p.logitBias),
  };
}

/**
 * logit_bias arrives as an object keyed by token id (JSON keys are strings): every key
 * must be a token id of this model written plainly ("7", not "07" or "7.0", which would
 * alias one token twice) and every value a number in [-100, 100].
 */
export function validateLogitBias(bias: unknown, vocabSize: number): void {
  if (bias === undefined) return;
  if (!isRecord(bias)) throw invalid('logit_bias', `logit_bias must be an object of token id -> bias, got ${describe(bias)}`);
  const keys = Object.keys(bias);
  if (keys.length > MAX_LOGIT_BIAS_TOKENS)
    throw invalid('logit_bias', `logit_bias may bias at most ${MAX_LOGIT_BIAS_TOKENS} tokens, got ${keys.length}`);
  for (const key of keys) {
    const id = Number(key);
    if (!/^(0|[1-9][0-9]*)$/.test(key) || !(id < vocabSize)) {
      throw invalid(
        'logit_bias',
        `logit_bias key ${JSON.stringify(key.slice(0, 40))} is not a token id of this model (vocabulary of ${vocabSize})`,
      );
    }
    const v: unknown = bias[key];
    if (!(typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= MAX_ABS_LOGIT_BIAS)) {
      throw invalid('logit_bias', `logit_bias for token ${key} must be a number between -100 and 100, got ${describe(v)}`);
    }
  }
}

/** The validated object as [token, bias] pairs by token id; zero biases change nothing and are dropped. */
function logitBiasEntries(bias: Readonly<Record<number, number>> | undefined): RowLogitBias | undefined {
  if (bias === undefined) return undefined;
  const entries = Object.entries(bias)
    .map(([k, v]) => [Number(k), v] as const)
    .filter(([, v]) => v !== 0)
    .sort((a, b) => a[0] - b[0]);
  return entries.length > 0 ? entries : undefined;
}

export function usesPenalties(s: ResolvedSampling): boolean {
  return s.repetitionPenalty !== 1 || s.frequencyPenalty !== 0 || s.presencePenalty !== 0;
}

/** Output is a function of the request alone: greedy, or sampled with an explicit seed. */
export function isDeterministic(s: ResolvedSampling): boolean {
  return s.temperature === 0 || s.seeded;
}

/** A plain object (not null, not an array): what request fields of object type must be. */
function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The types a TypeScript caller is held to, checked for JavaScript callers (and `as never`
 * casts): without this a missing prompt or a null sampling was a bare TypeError from deep
 * inside admission, and a signal that is not an AbortSignal threw after the request was
 * already queued, leaving it to run with nobody listening.
 */
function validateFieldTypes(r: GenerateRequest): void {
  const p: unknown = r.prompt;
  if (typeof p !== 'string' && !Array.isArray(p)) {
    throw invalid('prompt', `prompt must be a string, a list of token ids or a list of chat messages, got ${describe(p)}`);
  }
  if (Array.isArray(p) && !p.some((x) => typeof x === 'number')) checkChatMessages(p, 'messages');
  if (r.sampling !== undefined && !isRecord(r.sampling))
    throw invalid('sampling', `sampling must be an object, got ${describe(r.sampling)}`);
  for (const [param, v] of [
    ['stop_token_ids', r.stopTokenIds],
    ['resume_token_ids', r.resumeTokenIds],
  ] as const) {
    if (v !== undefined && !Array.isArray(v)) throw invalid(param, `${param} must be a list of token ids, got ${describe(v)}`);
  }
  if (r.chatTemplateKwargs !== undefined && !isRecord(r.chatTemplateKwargs)) {
    throw invalid('chat_template_kwargs', `chat_template_kwargs must be an object, got ${describe(r.chatTemplateKwargs)}`);
  }
  // a library caller's tools come in the kwargs themselves: nothing else to clash with
  checkTemplateKwargs(r.chatTemplateKwargs, false);
  // a truthy string ('no') was taken as true
  for (const [param, v] of [
    ['ignore_eos', r.ignoreEos],
    ['logprobs', r.logprobs],
    ['include_stop_str_in_output', r.includeStopStrInOutput],
  ] as const) {
    if (v !== undefined && typeof v !== 'boolean') throw invalid(param, `${param} must be true or false, got ${describe(v)}`);
  }
  validateResponseFormatShape(r.responseFormat);
  validateReasoningTags(r.formatAfterReasoning);
  const id: unknown = r.requestId;
  if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') {
    throw invalid('requestId', `requestId must be a string, got ${describe(id)}`);
  }
  const signal: unknown = r.signal;
  if (signal !== undefined && !(isRecord(signal) && typeof signal.addEventListener === 'function' && typeof signal.aborted === 'boolean')) {
    throw invalid('signal', `signal must be an AbortSignal, got ${describe(signal)}`);
  }
}

/** response_format's shape; whether its schema can be enforced is the constraint compiler's to say. */
export function validateResponseFormatShape(format: unknown): void {
  if (format === undefined) return;
  if (!isRecord(format)) throw invalid('response_format', `response_format must be an object, got ${describe(format)}`);
  const type = format.type;
  if (type === 'tool_calls') return validateToolCallsShape(format);
  if (type === 'regex' || type === 'choice') return validatePatternShape(format);
  if (type !== 'text' && type !== 'json_object' && type !== 'json_schema') {
    throw invalid(
      'response_format',
      `response_format type must be 'text', 'json_object', 'json_schema', 'regex' or 'choice', got ${describe(type)}`,
    );
  }
  if (type === 'json_schema' && !(isRecord(format.schema) || typeof format.schema === 'boolean')) {
    throw invalid('response_format', `response_format json_schema needs a schema (an object or a boolean), got ${describe(format.schema)}`);
  }
}

/** A regex or a list of choices, within bounds; whether a pattern can be enforced is the compiler's to say. */
function validatePatternShape(format: Record<string, unknown>): void {
  const param = typeof format.param === 'string' ? format.param : 'response_format';
  if (format.type === 'regex') {
    const p = format.pattern;
    if (typeof p !== 'string') throw invalid(param, `${param}: the regex must be a string, got ${describe(p)}`);
    if (p.length > MAX_PATTERN_LENGTH) throw invalid(param, `${param}: the regex is longer than ${MAX_PATTERN_LENGTH} characters`);
    return;
  }
  const choices = format.choices;
  if (!Array.isArray(choices) || choices.length === 0 || choices.length > MAX_CHOICES)
    throw invalid(param, `${param}: the choices must be a list of 1 to ${MAX_CHOICES} strings, got ${describe(choices)}`);
  choices.forEach((c: unknown, i) => {
    if (typeof c !== 'string' || c.length === 0 || c.length > MAX_CHOICE_LENGTH)
      throw invalid(
        `${param}.${i}`,
        `${param}.${i} must be a non-empty string of at most ${MAX_CHOICE_LENGTH} characters, got ${describe(c)}`,
      );
  });
  const total = (choices as string[]).reduce((sum, c) => sum + c.length, 0);
  if (total > MAX_CHOICES_TOTAL_LENGTH)
    throw invalid(param, `${param}: the choices hold ${total} characters together, more than ${MAX_CHOICES_TOTAL_LENGTH}`);
}

/** Tags the gate can look for: two texts, and where the output begins. */
function validateReasoningTags(tags: unknown): void {
  if (tags === undefined) return;
  if (!isRecord(tags)) throw invalid('formatAfterReasoning', `formatAfterReasoning must be an object, got ${describe(tags)}`);
  for (const key of ['start', 'end'] as const) {
    const v = tags[key];
    if (typeof v !== 'string' || v === '')
      throw invalid('formatAfterReasoning', `formatAfterReasoning.${key} must be a non-empty string, got ${describe(v)}`);
  }
  if (typeof tags.startsInside !== 'boolean')
    throw invalid('formatAfterReasoning', `formatAfterReasoning.startsInside must be a boolean, got ${describe(tags.startsInside)}`);
}

/** The server's tool-call constraint (types.ts's ToolCallsFormat); its schemas are the compiler's to judge. */
function validateToolCallsShape(format: Record<string, unknown>): void {
  if (!(TOOL_CALL_SYNTAXES as readonly unknown[]).includes(format.syntax))
    throw invalid('response_format', `tool_calls syntax must be one of ${TOOL_CALL_SYNTAXES.join(', ')}, got ${describe(format.syntax)}`);
  if (typeof format.parallel !== 'boolean') throw invalid('response_format', 'tool_calls needs parallel (a boolean)');
  if (format.forcedName !== undefined && typeof format.forcedName !== 'string')
    throw invalid('tool_choice', `the forced function name must be a string, got ${describe(format.forcedName)}`);
  const tools = format.tools;
  if (!Array.isArray(tools) || tools.length === 0) throw invalid('tools', 'tool_calls needs a non-empty list of tools');
  tools.forEach((t: unknown, i) => {
    if (!isRecord(t) || typeof t.name !== 'string') throw invalid('tools', `tools.${i} needs a name (a string)`);
    if (t.parameters !== undefined && !(isRecord(t.parameters) || typeof t.parameters === 'boolean'))
      throw invalid(`tools.${i}.function.parameters`, `tools.${i}.function.parameters must be an object, got ${describe(t.parameters)}`);
  });
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'string' ? JSON.stringify(v.slice(0, 40)) : typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

export function validateRequestShape(r: GenerateRequest, vocabSize: number): void {
  if (!isRecord(r)) throw invalid('request', `the request must be an object, got ${describe(r)}`);
  validateFieldTypes(r);
  if (r.maxTokens !== undefined && !(Number.isInteger(r.maxTokens) && r.maxTokens >= 1)) {
    throw invalid('max_tokens', `max_tokens must be a positive integer, got ${r.maxTokens}`);
  }
  validateMinTokens(r);
  const priority: unknown = r.priority;
  if (priority !== undefined && !(typeof priority === 'number' && Number.isSafeInteger(priority)))
    throw invalid('priority', `priority must be an integer, got ${describe(priority)}`);
  if (r.topLogprobs !== undefined && !(Number.isInteger(r.topLogprobs) && r.topLogprobs >= 0 && r.topLogprobs <= 20)) {
    throw invalid('top_logprobs', `top_logprobs must be an integer between 0 and 20, got ${r.topLogprobs}`);
  }
  const promptLogprobs: unknown = r.promptLogprobs;
  if (promptLogprobs !== undefined) {
    if (!(typeof promptLogprobs === 'number' && Number.isInteger(promptLogprobs) && promptLogprobs >= 0 && promptLogprobs <= 20))
      throw invalid('prompt_logprobs', `prompt_logprobs must be an integer between 0 and 20, got ${describe(promptLogprobs)}`);
    // a resumed request's prompt was scored where it began
    if (r.resumeTokenIds !== undefined && r.resumeTokenIds.length > 0)
      throw invalid('prompt_logprobs', 'prompt_logprobs cannot be combined with resume_token_ids');
  }
  if (r.stop !== undefined && (!Array.isArray(r.stop) || r.stop.some((s) => typeof s !== 'string' || s.length === 0))) {
    throw invalid('stop', 'stop must be a list of non-empty strings');
  }
  // a list with any number in it is token ids: all of it must be ([1, 'x'] used to pass as ids)
  if (Array.isArray(r.prompt) && r.prompt.some((p) => typeof p === 'number')) validateTokenIds('prompt', r.prompt, vocabSize);
  if (r.stopTokenIds) validateTokenIds('stop_token_ids', r.stopTokenIds, vocabSize);
  if (r.resumeTokenIds) validateTokenIds('resume_token_ids', r.resumeTokenIds, vocabSize);
  if (isRecord(r.sampling)) validateLogitBias(r.sampling.logitBias, vocabSize);
}

/** min_tokens on its own and against max_tokens and a response format (the room in the context is the engine's to check). */
function validateMinTokens(r: GenerateRequest): void {
  const min: unknown = r.minTokens;
  if (min === undefined) return;
  if (!(typeof min === 'number' && Number.isInteger(min) && min >= 0))
    throw invalid('min_tokens', `min_tokens must be a non-negative integer, got ${describe(min)}`);
  if (r.maxTokens !== undefined && min > r.maxTokens)
    throw invalid('min_tokens', `min_tokens (${min}) must not be greater than max_tokens (${r.maxTokens})`);
  const format: unknown = r.responseFormat;
  if (min > 0 && isRecord(format) && format.type !== 'text') {
    throw invalid(
      'min_tokens',
      'min_tokens cannot be combined with a constrained output (a JSON response_format, a regex or choice, or a required tool call): the format decides where the output ends',
    );
  }
}

export function validateTokenIds(param: string, ids: unknown, vocabSize: number): void {
  if (!Array.isArray(ids)) throw invalid(param, `${param} must be a list of token ids, got ${describe(ids)}`);
  // an index loop, so that holes in a sparse array are seen (every() and some() skip them)
  for (let i = 0; i < ids.length; i++) {
    const id: unknown = ids[i];
    if (!(typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < vocabSize)) {
      throw invalid(param, `${param} contains ${String(id)}, not a token id of this model (vocabulary of ${vocabSize})`);
    }
  }
}

/**
 * A copy of the request as admitted, taken before validation so that what is checked is
 * what runs. The engine reads some fields at every step (topLogprobs, logprobs) and at the
 * end (resumeTokenIds); a caller that reused its request object and changed a field while
 * the request ran used to change what the engine read: a top_logprobs past 20 then failed
 * the next step, and with it every request batched alongside. The fields are read by name
 * (once each), so a request built by a class with getters keeps them; arrays and sampling
 * are copied one level deep; the signal is kept as it is; unknown fields are left behind.
 */
export function snapshotRequest(r: GenerateRequest): GenerateRequest {
  if (!isRecord(r)) throw invalid('request', `the request must be an object, got ${describe(r)}`);
  const copy: GenerateRequest = { prompt: r.prompt };
  for (const key of REQUEST_SCALARS) {
    const v = r[key];
    if (v !== undefined) (copy as unknown as Record<string, unknown>)[key] = v;
  }
  if (Array.isArray(copy.prompt)) copy.prompt = [...copy.prompt] as GenerateRequest['prompt'];
  const sampling = r.sampling;
  if (isRecord(sampling)) {
    const s: Record<string, unknown> = {};
    for (const key of SAMPLING_FIELDS) if (sampling[key] !== undefined) s[key] = sampling[key];
    const bias = sampling.logitBias;
    if (bias !== undefined) s.logitBias = isRecord(bias) ? { ...bias } : bias;
    copy.sampling = s as SamplingParams;
  } else if (sampling !== undefined) copy.sampling = sampling;
  for (const key of ['stop', 'stopTokenIds', 'resumeTokenIds'] as const) {
    const v: unknown = r[key];
    if (v !== undefined) (copy as unknown as Record<string, unknown>)[key] = Array.isArray(v) ? [...(v as unknown[])] : v;
  }
  const kwargs = r.chatTemplateKwargs;
  if (kwargs !== undefined) copy.chatTemplateKwargs = isRecord(kwargs) ? { ...kwargs } : kwargs;
  // one level, like the rest: the schema is compiled at admission, before the caller can change it
  const format: unknown = r.responseFormat;
  if (format !== undefined) copy.responseFormat = (isRecord(format) ? { ...format } : format) as GenerateRequest['responseFormat'];
  const tags: unknown = r.formatAfterReasoning;
  if (tags !== undefined) copy.formatAfterReasoning = (isRecord(tags) ? { ...tags } : tags) as GenerateRequest['formatAfterReasoning'];
  return copy;
}

const REQUEST_SCALARS = [
  'maxTokens',
  'minTokens',
  'priority',
  'ignoreEos',
  'includeStopStrInOutput',
  'logprobs',
  'topLogprobs',
  'promptLogprobs',
  'signal',
  'requestId',
  'lora',
] as const satisfies readonly (keyof GenerateRequest)[];
const SAMPLING_FIELDS = [
  'temperature',
  'topK',
  'topP',
  'minP',
  'repetitionPenalty',
  'frequencyPenalty',
  'presencePenalty',
  'seed',
] as const satisfies readonly (keyof SamplingParams)[];

// Every field is copied: one added to GenerateRequest or SamplingParams without a place in
// snapshotRequest fails to compile here instead of being dropped from every request.
type CopiedRequestField =
  | (typeof REQUEST_SCALARS)[number]
  | 'prompt'
  | 'sampling'
  | 'stop'
  | 'stopTokenIds'
  | 'resumeTokenIds'
  | 'chatTemplateKwargs'
  | 'responseFormat'
  | 'formatAfterReasoning';
const everyRequestFieldCopied: [Exclude<keyof GenerateRequest, CopiedRequestField>] extends [never] ? true : never = true;
const everySamplingFieldCopied: [Exclude<keyof SamplingParams, (typeof SAMPLING_FIELDS)[number] | 'logitBias'>] extends [never]
  ? true
  : never = true;
void everyRequestFieldCopied;
void everySamplingFieldCopied;

/** tokenize()'s input: a list of numbers or strings was templated as if it were chat messages. */
export function validateTokenizeInput(input: unknown, options: unknown): void {
  if (typeof input !== 'string' && !(Array.isArray(input) && Array.from(input).every(isRecord))) {
    throw invalid('input', `tokenize() takes a string or a list of chat messages, got ${describe(input)}`);
  }
  if (Array.isArray(input)) checkChatMessages(input, 'input');
  if (options !== undefined && !isRecord(options))
    throw invalid('options', `tokenize() options must be an object, got ${describe(options)}`);
  // as generate() checks it: a string here was spread into the template's variables
  const kwargs = options?.chatTemplateKwargs;
  if (kwargs !== undefined && !isRecord(kwargs))
    throw invalid('chat_template_kwargs', `chat_template_kwargs must be an object, got ${describe(kwargs)}`);
  checkTemplateKwargs(kwargs, false);
}

/**
 * Chat messages as ChatMessage types them: a string role and string content (the server
 * flattens content parts to one string). A message without them was templated as if it
 * had them, a missing content rendered as nothing or as "None" depending on the template.
 */
function checkChatMessages(messages: readonly unknown[], param: string): void {
  // an index loop, so that holes in a sparse array are seen
  for (let i = 0; i < messages.length; i++) {
    const m: unknown = messages[i];
    if (!isRecord(m)) throw invalid(param, `each chat message must be an object with a role and content; message ${i} is ${describe(m)}`);
    if (typeof m.role !== 'string' || m.role === '' || typeof m.content !== 'string')
      throw invalid(
        param,
        `each chat message needs a role and content, both strings; message ${i} has role ${describe(m.role)} and content ${describe(m.content)}`,
      );
  }
}
