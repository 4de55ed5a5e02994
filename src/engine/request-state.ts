/**
 * The scheduler's view of one request: its tokens, how many of them have KV in the cache,
 * and counters for stats. Pure bookkeeping; the KV blocks themselves live in the
 * KV-cache manager, keyed by requestId.
 */
import type { FinishReason } from './types.js';
import type { BlockHash } from './block-hash.js';

export type RequestStatus = 'waiting' | 'running' | 'finished';

export interface NewRequest {
  requestId: string;
  promptTokenIds: readonly number[];
  /** Largest number of generated tokens, resumed ones included. */
  maxTokens: number;
  /**
   * Tokens already generated for this request elsewhere (failover): computed like prompt
   * tokens, but they count as generated (towards maxTokens and in outputTokenIds).
   */
  resumeTokenIds?: readonly number[];
  /**
   * Prompt logprobs: every prompt row is computed (no prefix-cache reuse) and scored with
   * the prompt token after it, until the first token is sampled.
   */
  scorePrompt?: boolean;
  /**
   * Speculative decoding may add draft rows to its decode steps: the caller's promise that it
   * samples each draft row as plain decoding would sample there (masks, biases and penalties
   * worked out along the drafts before it).
   */
  speculate?: boolean;
  /** With the scheduler's priority policy: lower values are admitted first (default 0). */
  priority?: number;
  /** The LoRA adapter it runs with, and which load of it (LoraRegistry): mixed into its blocks' prefix-cache hashes. */
  lora?: string;
  loraId?: number;
}

/** Per-request counters, live or final. */
export interface RequestStats {
  requestId: string;
  status: RequestStatus;
  finishReason: FinishReason | null;
  numPromptTokens: number;
  numResumeTokens: number;
  /** Generated tokens so far, resumed ones included. */
  numOutputTokens: number;
  /** Prompt (+ resume) tokens whose KV came from the prefix cache at first admission. */
  numCachedPromptTokens: number;
  /** Prompt (+ resume) token rows run through the model, recomputation after preemption included. */
  numComputedPromptTokens: number;
  /** All token rows run through the model for this request. */
  numComputedTokens: number;
  numPreemptions: number;
}

export class RequestState {
  readonly requestId: string;
  readonly numPromptTokens: number;
  readonly numResumeTokens: number;
  readonly maxTokens: number;
  readonly scorePrompt: boolean;
  readonly speculate: boolean;
  readonly priority: number;
  readonly lora: string | undefined;
  readonly loraId: number | undefined;
  /** Order of arrival at the scheduler (ties between equal priorities). */
  readonly arrival: number;
  /** Prompt, then generated tokens (resumed ones first). Only ever appended to. */
  readonly tokenIds: number[];
  /** Chained hashes of the full blocks of tokenIds, extended lazily by the KV-cache manager. */
  readonly blockHashes: BlockHash[] = [];
  status: RequestStatus = 'waiting';
  finishReason: FinishReason | null = null;
  /** Tokens whose KV is in the cache or being computed by the step in flight. */
  numComputedTokens = 0;
  /** Null until first admitted. */
  numCachedPromptTokens: number | null = null;
  numComputedPromptTokens = 0;
  numComputedRows = 0;
  numPreemptions = 0;
  /** Speculative decoding: draft steps in a row that kept no draft, and decode steps left before the next draft. */
  draftMisses = 0;
  draftPause = 0;

  constructor(request: NewRequest, arrival = 0) {
    this.requestId = request.requestId;
    const resume = request.resumeTokenIds ?? [];
    this.numPromptTokens = request.promptTokenIds.length;
    this.numResumeTokens = resume.length;
    this.maxTokens = request.maxTokens;
    this.scorePrompt = request.scorePrompt ?? false;
    this.speculate = request.speculate ?? false;
    this.priority = request.priority ?? 0;
    this.lora = request.lora;
    this.loraId = request.loraId;
    this.arrival = arrival;
    this.tokenIds = [...request.promptTokenIds, ...resume];
  }

  get numTokens(): number {
    return this.tokenIds.length;
  }

  get numOutputTokens(): number {
    return this.tokenIds.length - this.numPromptTokens;
  }

  /** Tokens that must be computed before the first token is sampled here. */
  get numPrefillTokens(): number {
    return this.numPromptTokens + this.numResumeTokens;
  }

  /** Whether this request's prompt rows are still to be scored: it wants them and has sampled nothing yet. */
  get scoresPrompt(): boolean {
    return this.scorePrompt && this.tokenIds.length === this.numPrefillTokens;
  }

  /** Rows of a chunk starting at `start` of `n` rows that are scored (a prefix of it: those followed by a prompt token). */
  scoredRowsIn(start: number, n: number): number {
    return this.scoresPrompt ? Math.max(0, Math.min(start + n, this.numPromptTokens - 1) - start) : 0;
  }

  get outputTokenIds(): number[] {
    return this.tokenIds.slice(this.numPromptTokens);
  }

  /** Counts a step's rows [start, start + n) in the per-request stats. */
  recordComputed(start: number, n: number): void {
    this.numComputedRows += n;
    this.numComputedPromptTokens += Math.max(0, Math.min(start + n, this.numPrefillTokens) - start);
  }

  stats(): RequestStats {
    return {
      requestId: this.requestId,
      status: this.status,
      finishReason: this.finishReason,
      numPromptTokens: this.numPromptTokens,
      numResumeTokens: this.numResumeTokens,
      numOutputTokens: this.numOutputTokens,
      numCachedPromptTokens: this.numCachedPromptTokens ?? 0,
      numComputedPromptTokens: this.numComputedPromptTokens,
      numComputedTokens: this.numComputedRows,
      numPreemptions: this.numPreemptions,
    };
  }
}
