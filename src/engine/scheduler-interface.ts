/**
 * The scheduler's contract with the engine loop:
 *
 *   addRequest ... ; while (hasUnfinished()) { out = schedule(); run the batch;
 *   updateFromOutput(sampled) }  — and finishRequest at any time (stop, cancel).
 *
 * Every schedule() must be followed by updateFromOutput() for that step, even when the
 * step sampled nothing (it marks the step's KV as computed and caches full blocks), or, when
 * running the step failed, by abandonStep().
 */
import type { FinishReason } from './types.js';
import type { NewRequest, RequestStats } from './request-state.js';
import type { FinishedRequest, SchedulerOutput, UpdateResult } from './scheduler-output.js';

export interface SchedulerStats {
  numWaiting: number;
  numRunning: number;
  /** The LoRA adapters of running and of waiting requests, each name once, sorted. */
  runningLoras: string[];
  waitingLoras: string[];
  kvBlockSize: number;
  kvBlocksTotal: number;
  kvBlocksUsed: number;
  kvBlocksFree: number;
  kvBlocksCached: number;
  /** In tokens. */
  prefixCacheQueries: number;
  prefixCacheHits: number;
  preemptions: number;
  cacheEvictions: number;
  /** Speculative decoding: sequence steps that carried drafts, draft tokens, and those the sampler kept. */
  specDecodeDrafts: number;
  specDecodeDraftTokens: number;
  specDecodeAcceptedTokens: number;
}

export interface SchedulerInterface {
  addRequest(request: NewRequest): void;
  schedule(): SchedulerOutput;
  /**
   * Sampled tokens per requestId, for every scheduled sequence with sample = true: one, or
   * with draftTokenIds one per sampled row (1 + drafts), in row order.
   */
  updateFromOutput(sampled: ReadonlyMap<string, number | readonly number[]>): UpdateResult;
  /**
   * The step of the last schedule() failed: its requests are finished (blocks freed, none of
   * the step's blocks cached), so the next schedule() starts clean. Returns their ids.
   */
  abandonStep(): string[];
  /** Frees the request's blocks at once. Null when the request is unknown or already finished. */
  finishRequest(requestId: string, reason: FinishReason): FinishedRequest | null;
  hasUnfinished(): boolean;
  readonly numWaiting: number;
  readonly numRunning: number;
  stats(): SchedulerStats;
  requestStats(requestId: string): RequestStats | null;
}
