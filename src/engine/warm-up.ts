import type { GenerateRequest } from './types.js';

/**
 * The start-up warm-up's requests, in waves: the requests of a wave run together, the waves
 * one after another. Between them they take the common kernel paths once: a prompt long
 * enough for the tall-GEMM tiling, alone (one-row decode, argmax), then two short prompts
 * together (a two-row decode; one greedy, one sampled with every filter and penalty and
 * with logprobs). Token ids, not text: any model's vocabulary has them. A shader that only
 * some later batch shape needs still compiles on first use.
 */
export function warmUpWaves(vocabSize: number, contextLength: number): GenerateRequest[][] {
  const ids = (n: number, salt: number): number[] => Array.from({ length: n }, (_, i) => (i * 31 + salt) % vocabSize);
  const fit = (n: number): number => Math.max(1, Math.min(n, contextLength - 4));
  return [
    [{ prompt: ids(fit(72), 7), maxTokens: 2, ignoreEos: true, requestId: 'warm-up-0' }],
    [
      { prompt: ids(fit(12), 11), maxTokens: 3, ignoreEos: true, requestId: 'warm-up-1' },
      {
        prompt: ids(fit(12), 13),
        maxTokens: 3,
        ignoreEos: true,
        requestId: 'warm-up-2',
        sampling: {
          temperature: 0.8,
          topK: 20,
          topP: 0.9,
          minP: 0.05,
          repetitionPenalty: 1.1,
          frequencyPenalty: 0.1,
          presencePenalty: 0.1,
          seed: 1,
        },
        logprobs: true,
        topLogprobs: 2,
      },
    ],
  ];
}
