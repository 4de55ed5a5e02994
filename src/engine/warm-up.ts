import { GEMV_MAX_ROWS } from '../kernels/matmul.js';
import type { GenerateRequest, SamplingParams } from './types.js';

/** Every filter and penalty on: the sampling kernels' full path. */
const SAMPLED: SamplingParams = {
  temperature: 0.8,
  topK: 20,
  topP: 0.9,
  minP: 0.05,
  repetitionPenalty: 1.1,
  frequencyPenalty: 0.1,
  presencePenalty: 0.1,
  seed: 1,
  // compiles the logit_bias scatter too (token 0 exists in every vocabulary)
  logitBias: { 0: -1 },
};

/**
 * The start-up warm-up's requests, in waves: the requests of a wave run together, the waves
 * one after another. A prompt long enough for the tall-GEMM tiling goes alone (one-row
 * decode, argmax); then waves of 2, 3, ... short prompts up to one past the GEMV's row limit,
 * because the GEMV compiles once per decode batch width and the GEMM above it once (without
 * them, the first burst of 8 requests after start-up on a cold shader cache took 25 s instead
 * of 0.6 s). The two-wide wave also samples with every filter, penalty and logprobs. Token
 * ids, not text: any model's vocabulary has them. Waves are capped at the engine's batch width
 * and prompts at the context.
 */
export function warmUpWaves(
  vocabSize: number,
  contextLength: number,
  maxSequences: number,
  gemvMaxRows = GEMV_MAX_ROWS,
): GenerateRequest[][] {
  // every request's prompt + maxTokens (at most 3) must fit the context; one too short for
  // that (a --max-context-tokens of a few) serves so little that it goes without a warm-up
  if (contextLength < 5) return [];
  const ids = (n: number, salt: number): number[] => Array.from({ length: n }, (_, i) => (i * 31 + salt) % vocabSize);
  const fit = (n: number): number => Math.max(1, Math.min(n, contextLength - 4));
  const waves: GenerateRequest[][] = [[{ prompt: ids(fit(72), 7), maxTokens: 2, ignoreEos: true, requestId: 'warm-up-0' }]];
  for (let width = 2; width <= Math.min(gemvMaxRows + 1, maxSequences); width++) {
    waves.push(
      Array.from({ length: width }, (_, j): GenerateRequest => {
        const request: GenerateRequest = {
          prompt: ids(fit(12), 11 + j),
          maxTokens: 3,
          ignoreEos: true,
          requestId: `warm-up-${width}-${j}`,
        };
        return width === 2 && j === 1 ? { ...request, sampling: SAMPLED, logprobs: true, topLogprobs: 2 } : request;
      }),
    );
  }
  return waves;
}
