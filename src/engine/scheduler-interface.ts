/**
 * The scheduler's contract with the engine loop:
 *
 *   addRequest ... ; while (hasUnfinished()) { out = schedule(); run the batch;
 *   updateFromOutput(sampled) }  — and finishRequest at any time (stop, cancel).
 *
 * Every schedule() must be followed by updateFromOutput() for that step, even when the
 * step sampled nothing (it marks the step's KV as computed and caches full blocks).
 */
import type { FinishReason } from './types.js';
import type { NewRequest, RequestStats } from './request-state.js';
import type { FinishedRequest, SchedulerOutput, UpdateResult } from './scheduler-output.js';

export interface SchedulerStats {
  numWaiting: number;
  numRunning: number;
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
}

export interface SchedulerInterface {
  addRequest(request: NewRequest): void;
  schedule(): SchedulerOutput;
  /** Sampled token per requestId, for every scheduled sequence with sample = true. */
  updateFromOutput(sampled: ReadonlyMap<string, number>): UpdateResult;
  /** Frees the request's blocks at once. Null when the request is unknown or already finished. */
  finishRequest(requestId: string, reason: FinishReason): FinishedRequest | null;
  hasUnfinished(): boolean;
  readonly numWaiting: number;
  readonly numRunning: number;
  stats(): SchedulerStats;
  requestStats(requestId: string): RequestStats | null;
}
