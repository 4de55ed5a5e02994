/**
 * Validates a GenerateRequest's numbers before any GPU work, so that a bad request is a
 * typed 400 naming the parameter, never a failure inside a step that other requests share.
 */
import { AutoGlmError } from '../errors.js';
import type { GenerateRequest, SamplingParams } from './types.js';

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
}

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
  };
}

export function usesPenalties(s: ResolvedSampling): boolean {
  return s.repetitionPenalty !== 1 || s.frequencyPenalty !== 0 || s.presencePenalty !== 0;
}

/** Output is a function of the request alone: greedy, or sampled with an explicit seed. */
export function isDeterministic(s: ResolvedSampling): boolean {
  return s.temperature === 0 || s.seeded;
}

export function validateRequestShape(r: GenerateRequest, vocabSize: number): void {
  if (r.maxTokens !== undefined && !(Number.isInteger(r.maxTokens) && r.maxTokens >= 1)) {
    throw invalid('max_tokens', `max_tokens must be a positive integer, got ${r.maxTokens}`);
  }
  if (r.topLogprobs !== undefined && !(Number.isInteger(r.topLogprobs) && r.topLogprobs >= 0 && r.topLogprobs <= 20)) {
    throw invalid('top_logprobs', `top_logprobs must be an integer between 0 and 20, got ${r.topLogprobs}`);
  }
  if (r.stop !== undefined && (!Array.isArray(r.stop) || r.stop.some((s) => typeof s !== 'string' || s.length === 0))) {
    throw invalid('stop', 'stop must be a list of non-empty strings');
  }
  const checkIds = (param: string, ids: readonly unknown[]) => {
    for (const id of ids) {
      if (!(typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < vocabSize)) {
        throw invalid(param, `${param} contains ${String(id)}, not a token id of this model (vocabulary of ${vocabSize})`);
      }
    }
  };
  if (Array.isArray(r.prompt) && r.prompt.every((p) => typeof p === 'number')) checkIds('prompt', r.prompt);
  if (r.stopTokenIds) checkIds('stop_token_ids', r.stopTokenIds);
  if (r.resumeTokenIds) checkIds('resume_token_ids', r.resumeTokenIds);
}
