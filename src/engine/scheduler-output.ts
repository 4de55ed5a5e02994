/**
 * What one scheduler step hands the model runner: plain data, numeric block ids, no
 * block objects. The runner builds its batch rows in the order of `sequences` (decode
 * rows first, then prefill chunks) and reports back one sampled token per sequence whose
 * `sample` is true.
 */
import type { FinishReason } from './types.js';
import type { RequestStats } from './request-state.js';

export interface ScheduledSequence {
  requestId: string;
  /** Tokens whose KV this step computes: a prompt chunk, or the single last sampled token. */
  tokenIds: number[];
  /** Absolute position of tokenIds[0]; the sequence's kvLen is startPosition + tokenIds.length. */
  startPosition: number;
  /** Block ids covering positions [0, startPosition + tokenIds.length). */
  blockTable: number[];
  /** True when this step's last row yields a token to sample (all known tokens computed). */
  sample: boolean;
  /**
   * Speculative decoding: guessed tokens after the last sampled one, the tail of tokenIds.
   * The last draftTokenIds.length + 1 rows are all sampled; updateFromOutput keeps the
   * drafts the samples agree with, and the sample after them.
   */
  draftTokenIds?: number[];
  /**
   * Prompt logprobs: the first scoreTargets.length rows are scored, row j against
   * scoreTargets[j] (the prompt token after it). Absent when no row is.
   */
  scoreTargets?: number[];
}

export interface SchedulerOutput {
  /** Decode sequences first, then prefill chunks. */
  sequences: ScheduledSequence[];
  /** Requests preempted by this step (recompute mode: their KV was dropped). */
  preempted: string[];
  /** Token rows in this step (sum of tokenIds lengths), at most maxBatchTokens. */
  numBatchedTokens: number;
}

export interface FinishedRequest {
  requestId: string;
  reason: FinishReason;
  /** Generated tokens, resumed ones included. */
  outputTokenIds: number[];
  stats: RequestStats;
}

export interface UpdateResult {
  /** Requests that reached maxTokens with this step (finished with reason 'length'). */
  finished: FinishedRequest[];
  /**
   * Tokens appended per sampled sequence, from its first sampled row on: 1, or with drafts
   * 1 + the drafts kept. The rows after them sampled positions that did not happen.
   */
  appended: Map<string, number>;
}
