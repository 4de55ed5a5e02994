/**
 * Checks EngineOptions before Engine.load reads a byte of weights. A JavaScript caller
 * (or one reading numbers from the environment) can pass NaN, 0 or a string: NaN or 0 for
 * maxContextTokens used to surface only after the upload as an internal_error from the KV
 * cache allocator, a NaN kvCacheBytes likewise, and 0 batch sequences quietly became 1.
 */
import { AutoGlmError } from '../errors.js';
import { EVENT_POLLING_MODES } from '../kernels/event-polling.js';
import { parseKernelProfile } from '../kernels/kernel-profile.js';
import { validateLoraOptions } from './lora/load-adapters.js';
import { SCHEDULING_POLICIES, WEIGHT_DTYPE_OPTIONS, type EngineOptions } from './types.js';

const POSITIVE_INTEGERS = ['kvBlockSize', 'maxBatchSequences', 'maxBatchTokens', 'maxContextTokens'] as const;
/**
 * Rows of one engine step (sampled sequences, tokens): kernels run a row per workgroup along
 * a dispatch dimension, which WebGPU caps at 65535, and the sampler's output is sized by it.
 * Larger values failed after the upload with an untyped RangeError or a GPU allocation error.
 */
export const MAX_STEP_ROWS = 65535;
const STEP_ROWS = ['maxBatchSequences', 'maxBatchTokens'] as const;
/** Bounds, not counts: Infinity means unbounded. */
const NON_NEGATIVE = ['responseCacheEntries', 'responseCacheBytes', 'responseCacheTtlMs'] as const;
const NON_NEGATIVE_INTEGERS = ['promptLogprobsRows'] as const;
/** Speculative tokens per decode row at most: each is a row of logits, and guesses run out long before. */
export const MAX_SPECULATIVE_TOKENS = 32;
/** Prompt lookup's n-gram lengths: longer suffixes than this add scan time and hardly any hits. */
export const MAX_PROMPT_LOOKUP = 64;

function invalid(param: string, message: string): AutoGlmError {
  return new AutoGlmError('invalid_request', message, { param });
}

export function validateEngineOptions(options: EngineOptions): void {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'engine options must be an object');
  for (const key of POSITIVE_INTEGERS) {
    const v: unknown = options[key];
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v >= 1)) {
      throw invalid(key, `${key} must be a positive integer, got ${String(v)}`);
    }
  }
  for (const key of STEP_ROWS) {
    const v = options[key];
    if (v !== undefined && v > MAX_STEP_ROWS)
      throw invalid(key, `${key} must be at most ${MAX_STEP_ROWS} (rows of one engine step), got ${v}`);
  }
  // memory-plan.ts checks it again, after the upload: here it costs nothing
  if (options.kvBlockSize !== undefined && options.kvBlockSize > 1024)
    throw invalid('kvBlockSize', `kvBlockSize must be an integer in [1, 1024], got ${options.kvBlockSize}`);
  if (options.kernelProfile !== undefined) parseKernelProfile(String(options.kernelProfile), 'kernelProfile');
  const kv: unknown = options.kvCacheBytes;
  if (kv !== undefined && !(typeof kv === 'number' && Number.isFinite(kv) && kv >= 0)) {
    throw invalid('kvCacheBytes', `kvCacheBytes must be a non-negative number of bytes, got ${String(kv)}`);
  }
  for (const key of NON_NEGATIVE_INTEGERS) {
    const v: unknown = options[key];
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_STEP_ROWS))
      throw invalid(key, `${key} must be an integer in [0, ${MAX_STEP_ROWS}], got ${String(v)}`);
  }
  for (const [key, least, most] of [
    ['speculativeTokens', 0, MAX_SPECULATIVE_TOKENS],
    ['promptLookupMin', 1, MAX_PROMPT_LOOKUP],
    ['promptLookupMax', 1, MAX_PROMPT_LOOKUP],
  ] as const) {
    const v: unknown = options[key];
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v >= least && v <= most))
      throw invalid(key, `${key} must be an integer in [${least}, ${most}], got ${String(v)}`);
  }
  const policy: unknown = options.schedulingPolicy;
  if (policy !== undefined && !(SCHEDULING_POLICIES as readonly unknown[]).includes(policy))
    throw invalid('schedulingPolicy', `schedulingPolicy must be one of ${SCHEDULING_POLICIES.join(', ')}, got ${String(policy)}`);
  const { min: lookupMin, max: lookupMax } = promptLookupOf(options);
  if (lookupMin > lookupMax)
    throw invalid('promptLookupMin', `promptLookupMin (${lookupMin}) must not exceed promptLookupMax (${lookupMax})`);
  for (const key of NON_NEGATIVE) {
    const v: unknown = options[key];
    if (v !== undefined && !(typeof v === 'number' && v >= 0)) throw invalid(key, `${key} must be a number >= 0, got ${String(v)}`);
  }
  const weightDType: unknown = options.weightDType;
  if (weightDType !== undefined && !(WEIGHT_DTYPE_OPTIONS as readonly unknown[]).includes(weightDType)) {
    throw invalid('weightDType', `weightDType must be one of ${WEIGHT_DTYPE_OPTIONS.join(', ')}, got ${String(weightDType)}`);
  }
  const forceF32: unknown = options.forceF32;
  // a truthy string ('no') was taken as true
  if (forceF32 !== undefined && typeof forceF32 !== 'boolean')
    throw invalid('forceF32', `forceF32 must be true or false, got ${String(forceF32)}`);
  const foldNorms: unknown = options.foldNorms;
  if (foldNorms !== undefined && typeof foldNorms !== 'boolean')
    throw invalid('foldNorms', `foldNorms must be true or false, got ${String(foldNorms)}`);
  if (weightDType === 'f16' && options.forceF32) {
    throw invalid('weightDType', 'weightDType f16 and forceF32 contradict each other: drop one');
  }
  validateLoraOptions(options);
  const name: unknown = options.servedModelName;
  if (name !== undefined && !(typeof name === 'string' && name !== '')) {
    throw invalid('servedModelName', `servedModelName must be a non-empty string, got ${String(name)}`);
  }
}

/** Prompt lookup's n-gram lengths with their defaults (2 and 4, or the one given where only one is). */
export function promptLookupOf(options: Pick<EngineOptions, 'promptLookupMin' | 'promptLookupMax'>): { min: number; max: number } {
  const max = options.promptLookupMax ?? Math.max(4, options.promptLookupMin ?? 0);
  return { min: options.promptLookupMin ?? Math.min(2, max), max };
}

/**
 * The AUTOGLM_* variables the engine reads that no option or flag stands for. The GPU layer
 * reads AUTOGLM_GPU_EVENT_POLLING only when it acquires the device, after the model folder
 * was read (and, under `autoglm serve`, after the port was bound): checked here, up front,
 * and named as the variable, since that is what the operator has to change.
 */
export function validateEngineEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  const polling = env.AUTOGLM_GPU_EVENT_POLLING;
  if (polling !== undefined && polling !== '' && !(EVENT_POLLING_MODES as readonly string[]).includes(polling))
    throw invalid(
      'AUTOGLM_GPU_EVENT_POLLING',
      `AUTOGLM_GPU_EVENT_POLLING must be one of ${EVENT_POLLING_MODES.join(', ')}, got '${polling}'`,
    );
}
