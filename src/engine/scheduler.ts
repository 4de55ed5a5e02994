/**
 * Continuous batching at token granularity (vLLM v1 style, recompute preemption).
 *
 * Each step spends a token budget: first one row for every running sequence in decode,
 * then the rest of partially prefilled running sequences, then new (or preempted)
 * requests from the front of the waiting queue, prompt chunks cut to what the budget
 * leaves (chunked prefill). A request is admitted when the KV-cache manager can give it
 * slots, leading full blocks found in the prefix cache first. When a running sequence
 * cannot get a slot, the newest running sequence is preempted: its blocks are freed and
 * it goes back to the front of the waiting queue, to recompute prompt + generated tokens
 * later (mostly from the prefix cache). Nothing fails for lack of memory once admitted;
 * a request that could never fit the whole pool is rejected by addRequest.
 *
 * With the `priority` policy (vLLM's), the waiting queue is ordered by (priority, arrival),
 * lower values first, and the running sequence preempted for memory is the one with the
 * largest (priority, arrival) instead of the newest. Running sequences are never preempted
 * to admit a waiting one, as in vLLM: priority decides who goes next, not who stops.
 *
 * Speculative decoding (prompt lookup, ngram-proposer.ts), when configured: a decode row of
 * a request that allows it is followed by draft tokens guessed from its own earlier text,
 * rows the step computes and samples like the first. A draft is kept while it equals what
 * was sampled at its position, so the output is the one plain decoding would give:
 * sampling draws from (seed, position), never from the step. Drafts take only the rows no
 * decode or prompt chunk wanted (time to first token comes first) and never cause a
 * preemption. A sequence whose drafts all fail pauses drafting for 1, 3, then 7 decode
 * steps (a draft row is not free on a compute-bound adapter: text that does not repeat its
 * context should cost a few such rows, not one every step); a kept draft ends the pause.
 */
import { AutoGlmError } from '../errors.js';
import type { BlockHashExtraKeys } from './block-hash.js';
import { KvCacheManager, NO_HIT } from './kv-cache.js';
import { proposeNgramDrafts, type NgramProposerOptions } from './ngram-proposer.js';
import { RequestState, type NewRequest, type RequestStats } from './request-state.js';
import type { SchedulerInterface, SchedulerStats } from './scheduler-interface.js';
import type { FinishedRequest, ScheduledSequence, SchedulerOutput, UpdateResult } from './scheduler-output.js';
import { SCHEDULING_POLICIES, type FinishReason, type SchedulingPolicy } from './types.js';

export interface SchedulerOptions {
  numBlocks: number;
  /** Tokens per KV block. */
  blockSize: number;
  /** Token rows per step (decode rows + prefill chunk rows). */
  maxBatchTokens: number;
  /** Running sequences at most (each gets a row every step). */
  maxBatchSequences: number;
  enablePrefixCaching: boolean;
  /** Prompt rows scored per step at most (prompt logprobs; default 0: requests that ask are refused). */
  maxScoreRows?: number;
  /** Mixed into block hashes (e.g. the model name). */
  hashExtraKeys?: BlockHashExtraKeys;
  /** Speculative decoding by prompt lookup; absent: off. */
  speculation?: SpeculationOptions;
  /** fcfs (default): arrival order; priority: by each request's priority, then arrival. */
  policy?: SchedulingPolicy;
}

export interface SpeculationOptions extends NgramProposerOptions {
  /** Draft tokens after a sequence's decode row at most. */
  numDraftTokens: number;
  /** Draft rows per step at most (each a row of logits beside the sampled ones). */
  maxDraftRows: number;
}

/**
 * Draft steps in a row that kept nothing, as counted for the pause after them (2^misses - 1
 * decode steps, at most 7: on the demo model, pauses of up to 15 missed the copied text that
 * followed a few failed guesses, and 7 kept most of it).
 */
const MAX_DRAFT_MISSES = 3;

interface StepEntry {
  request: RequestState;
  numNewTokens: number;
  /** Speculative tokens after the decode row (the tail of the step's rows). */
  drafts: number[];
}

export class Scheduler implements SchedulerInterface {
  readonly blockSize: number;
  readonly maxBatchTokens: number;
  readonly maxBatchSequences: number;
  readonly maxScoreRows: number;
  private readonly kv: KvCacheManager;
  private readonly requests = new Map<string, RequestState>();
  /** Front is admitted first; preempted requests are put back at the front. */
  private readonly waiting: RequestState[] = [];
  /** In admission order: the last one is the newest, the first preempted. */
  private readonly running: RequestState[] = [];
  /** Sequences of the step awaiting updateFromOutput. */
  private inFlight: ScheduledSequence[] | null = null;
  private preemptions = 0;
  readonly speculation: SpeculationOptions | null;
  readonly policy: SchedulingPolicy;
  private arrivals = 0;
  private readonly spec = { drafts: 0, draftTokens: 0, acceptedTokens: 0 };

  constructor(options: SchedulerOptions) {
    for (const key of ['maxBatchTokens', 'maxBatchSequences'] as const) {
      if (!Number.isInteger(options[key]) || options[key] < 1) {
        throw new AutoGlmError('invalid_request', `scheduler: ${key} must be a positive integer (got ${options[key]})`);
      }
    }
    // Every running sequence needs a row per step, or some decodes would starve.
    if (options.maxBatchTokens < options.maxBatchSequences) {
      throw new AutoGlmError(
        'invalid_request',
        `scheduler: maxBatchTokens (${options.maxBatchTokens}) must be at least maxBatchSequences (${options.maxBatchSequences})`,
      );
    }
    this.blockSize = options.blockSize;
    this.maxBatchTokens = options.maxBatchTokens;
    this.maxBatchSequences = options.maxBatchSequences;
    this.maxScoreRows = options.maxScoreRows ?? 0;
    if (!Number.isInteger(this.maxScoreRows) || this.maxScoreRows < 0) {
      throw new AutoGlmError('invalid_request', `scheduler: maxScoreRows must be a non-negative integer (got ${options.maxScoreRows})`);
    }
    this.speculation = checkSpeculation(options.speculation);
    this.policy = options.policy ?? 'fcfs';
    if (!SCHEDULING_POLICIES.includes(this.policy)) {
      throw new AutoGlmError(
        'invalid_request',
        `scheduler: policy must be one of ${SCHEDULING_POLICIES.join(', ')} (got ${String(options.policy)})`,
      );
    }
    this.kv = new KvCacheManager({
      numBlocks: options.numBlocks,
      blockSize: options.blockSize,
      enablePrefixCaching: options.enablePrefixCaching,
      hashExtraKeys: options.hashExtraKeys,
    });
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.length;
  }

  hasUnfinished(): boolean {
    return this.requests.size > 0;
  }

  addRequest(request: NewRequest): void {
    const { requestId, promptTokenIds, maxTokens } = request;
    const resume = request.resumeTokenIds ?? [];
    if (typeof requestId !== 'string' || requestId === '') {
      throw new AutoGlmError('invalid_request', 'requestId must be a non-empty string', { param: 'requestId' });
    }
    if (this.requests.has(requestId)) {
      throw new AutoGlmError('invalid_request', `request ${requestId} is already scheduled`, { param: 'requestId' });
    }
    if (promptTokenIds.length === 0) {
      throw new AutoGlmError('invalid_request', 'the prompt has no tokens', { param: 'prompt' });
    }
    for (const [name, ids] of [
      ['prompt', promptTokenIds],
      ['resumeTokenIds', resume],
    ] as const) {
      if (!ids.every((t) => Number.isInteger(t) && t >= 0)) {
        throw new AutoGlmError('invalid_request', `${name} token ids must be non-negative integers`, { param: name });
      }
    }
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      throw new AutoGlmError('invalid_request', `maxTokens must be a positive integer (got ${maxTokens})`, {
        param: 'maxTokens',
      });
    }
    if (resume.length >= maxTokens) {
      throw new AutoGlmError('invalid_request', `${resume.length} resumed tokens leave nothing to generate within maxTokens ${maxTokens}`, {
        param: 'resumeTokenIds',
      });
    }
    if (request.scorePrompt && this.maxScoreRows < 1) {
      throw new AutoGlmError(
        'invalid_request',
        'prompt logprobs are off on this engine (promptLogprobsRows is 0, or the device has no room for their logits)',
        { param: 'prompt_logprobs' },
      );
    }
    // The last sampled token is never fed back, so its KV is never needed.
    const maxKvTokens = promptTokenIds.length + maxTokens - 1;
    const capacity = this.kv.numBlocks * this.blockSize;
    if (maxKvTokens > capacity) {
      throw new AutoGlmError(
        'context_length_exceeded',
        `prompt (${promptTokenIds.length} tokens) + maxTokens (${maxTokens}) needs KV for ${maxKvTokens} tokens; ` +
          `the whole KV cache holds ${capacity} (${this.kv.numBlocks} blocks of ${this.blockSize})`,
        { param: 'maxTokens' },
      );
    }
    this.checkPriority(request.priority);
    const state = new RequestState(request, this.arrivals++);
    this.requests.set(requestId, state);
    this.enqueue(state);
  }

  /** Refuses a priority this scheduler cannot honour: not an integer, or other than 0 under fcfs. */
  checkPriority(priority: number | undefined): void {
    if (priority === undefined) return;
    if (!Number.isSafeInteger(priority)) {
      throw new AutoGlmError('invalid_request', `priority must be an integer (got ${priority})`, { param: 'priority' });
    }
    if (priority !== 0 && this.policy !== 'priority') {
      throw new AutoGlmError(
        'invalid_request',
        'priority scheduling is not enabled: requests are served in arrival order (the engine option schedulingPolicy, `autoglm serve --scheduling-policy priority`)',
        { param: 'priority' },
      );
    }
  }

  schedule(): SchedulerOutput {
    if (this.inFlight !== null && this.inFlight.length > 0) {
      throw new AutoGlmError('internal_error', 'scheduler: schedule() called before updateFromOutput() of the last step');
    }
    let budget = this.maxBatchTokens;
    // prompt rows scored this step (prompt logprobs), each a row of logits of their own
    let scoreBudget = this.maxScoreRows;
    const step = new Map<string, StepEntry>();
    const preempted: string[] = [];

    // a scored chunk stops where the step's scored rows run out
    const chunkOf = (request: RequestState, start: number, wanted: number): number =>
      request.scoredRowsIn(start, wanted) > scoreBudget ? scoreBudget : wanted;

    const scheduleRunning = (request: RequestState): void => {
      const start = request.numComputedTokens;
      const numNewTokens = chunkOf(request, start, Math.min(request.numTokens - start, budget));
      if (numNewTokens <= 0 || request.status !== 'running') return;
      for (;;) {
        const table = this.kv.allocateSlots(request, { numComputedTokens: request.numComputedTokens, numNewTokens });
        if (table !== null) {
          step.set(request.requestId, { request, numNewTokens, drafts: [] });
          budget -= numNewTokens;
          scoreBudget -= request.scoredRowsIn(start, numNewTokens);
          return;
        }
        const victim = this.victim();
        const victimEntry = step.get(victim.requestId);
        if (victimEntry !== undefined) {
          // Already given rows this step: take them back.
          step.delete(victim.requestId);
          budget += victimEntry.numNewTokens;
          scoreBudget += victim.scoredRowsIn(victim.numComputedTokens, victimEntry.numNewTokens);
        }
        this.preempt(victim);
        preempted.push(victim.requestId);
        if (victim === request) return;
      }
    };

    // Decode rows first: each running sequence with just its last sampled token to compute.
    for (const r of [...this.running]) if (r.numTokens - r.numComputedTokens === 1) scheduleRunning(r);
    for (const r of [...this.running]) if (r.numTokens - r.numComputedTokens > 1) scheduleRunning(r);

    // Admit waiting requests in order; none while memory is so short that we just preempted.
    while (preempted.length === 0 && this.waiting.length > 0 && budget > 0 && this.running.length < this.maxBatchSequences) {
      const request = this.waiting[0]!;
      // a scored prompt needs every row's logits: no cached prefix
      const prefixHit = request.scoresPrompt ? NO_HIT : this.kv.findPrefixHit(request);
      const numNewTokens = chunkOf(request, prefixHit.numTokens, Math.min(request.numTokens - prefixHit.numTokens, budget));
      if (numNewTokens <= 0) break;
      const table = this.kv.allocateSlots(request, { numComputedTokens: prefixHit.numTokens, numNewTokens, prefixHit });
      if (table === null) break; // first come first served: no skipping ahead
      this.waiting.shift();
      request.status = 'running';
      request.numComputedTokens = prefixHit.numTokens;
      request.numCachedPromptTokens ??= Math.min(prefixHit.numTokens, request.numPrefillTokens);
      this.running.push(request);
      step.set(request.requestId, { request, numNewTokens, drafts: [] });
      budget -= numNewTokens;
      scoreBudget -= request.scoredRowsIn(prefixHit.numTokens, numNewTokens);
    }

    // Drafts last, in the rows no decode or prompt chunk wanted, and only where blocks are free.
    if (this.speculation !== null) {
      let draftBudget = this.speculation.maxDraftRows;
      for (const entry of step.values()) {
        const { request } = entry;
        if (entry.numNewTokens !== 1 || request.numTokens - request.numComputedTokens !== 1) continue;
        const drafts = this.draftsFor(request, Math.min(draftBudget, budget));
        if (drafts.length === 0) continue;
        const slots = { numComputedTokens: request.numComputedTokens, numNewTokens: 1 + drafts.length };
        // a guess is not worth a preemption
        if (this.kv.allocateSlots(request, slots) === null) continue;
        entry.numNewTokens += drafts.length;
        entry.drafts = drafts;
        budget -= drafts.length;
        draftBudget -= drafts.length;
      }
    }

    const sequences: ScheduledSequence[] = [];
    let numBatchedTokens = 0;
    for (const { request, numNewTokens, drafts } of step.values()) {
      const start = request.numComputedTokens;
      const end = start + numNewTokens;
      const scored = request.scoredRowsIn(start, numNewTokens);
      sequences.push({
        requestId: request.requestId,
        tokenIds: drafts.length > 0 ? [...request.tokenIds.slice(start), ...drafts] : request.tokenIds.slice(start, end),
        startPosition: start,
        // a sequence whose drafts were refused may hold blocks past this step's rows
        blockTable: this.kv.blockTable(request.requestId).slice(0, Math.ceil(end / this.blockSize)),
        sample: end - drafts.length === request.numTokens,
        ...(scored > 0 ? { scoreTargets: request.tokenIds.slice(start + 1, start + 1 + scored) } : {}),
        ...(drafts.length > 0 ? { draftTokenIds: drafts } : {}),
      });
      // Counted as computed now: the step's KV writes land before anyone can read them.
      request.numComputedTokens = end;
      request.recordComputed(start, numNewTokens);
      numBatchedTokens += numNewTokens;
    }
    this.inFlight = sequences;
    return { sequences, preempted, numBatchedTokens };
  }

  updateFromOutput(sampled: ReadonlyMap<string, number | readonly number[]>): UpdateResult {
    const sequences = this.inFlight ?? [];
    this.inFlight = null;
    const finished: FinishedRequest[] = [];
    const appended = new Map<string, number>();
    for (const seq of sequences) {
      const request = this.requests.get(seq.requestId);
      // Finished (cancelled, stop string) while the step ran: its blocks are already free.
      if (request === undefined || request.status !== 'running') continue;
      const drafts = seq.draftTokenIds ?? [];
      const tokens = seq.sample ? sampledTokensOf(seq.requestId, sampled.get(seq.requestId), 1 + drafts.length) : [];
      // a draft stands while it is what was sampled at its position; the sample after the
      // last one standing is the next token, and the rows past it computed KV for a guess
      let kept = 0;
      while (kept < drafts.length && tokens[kept] === drafts[kept]) kept++;
      if (drafts.length > 0) {
        request.numComputedTokens -= drafts.length - kept;
        this.spec.drafts++;
        this.spec.draftTokens += drafts.length;
        this.spec.acceptedTokens += kept;
        request.draftMisses = kept > 0 ? 0 : Math.min(request.draftMisses + 1, MAX_DRAFT_MISSES);
        request.draftPause = 2 ** request.draftMisses - 1;
      }
      this.kv.cacheFullBlocks(request, request.numComputedTokens);
      if (!seq.sample) continue;
      for (let i = 0; i <= kept; i++) request.tokenIds.push(tokens[i]!);
      appended.set(seq.requestId, kept + 1);
      if (request.numOutputTokens >= request.maxTokens) finished.push(this.finish(request, 'length'));
    }
    return { finished, appended };
  }

  abandonStep(): string[] {
    const sequences = this.inFlight ?? [];
    this.inFlight = null;
    // Not retried: the failing input may be any of them, and a retry would fail the batch again.
    return sequences.filter((seq) => this.finishRequest(seq.requestId, 'cancelled') !== null).map((seq) => seq.requestId);
  }

  finishRequest(requestId: string, reason: FinishReason): FinishedRequest | null {
    const request = this.requests.get(requestId);
    return request === undefined ? null : this.finish(request, reason);
  }

  requestStats(requestId: string): RequestStats | null {
    return this.requests.get(requestId)?.stats() ?? null;
  }

  /** Block ids currently held by the request (tests and debugging). */
  blockTable(requestId: string): number[] {
    return this.kv.blockTable(requestId);
  }

  stats(): SchedulerStats {
    const kv = this.kv.stats();
    return {
      numWaiting: this.waiting.length,
      numRunning: this.running.length,
      runningLoras: lorasOf(this.running),
      waitingLoras: lorasOf(this.waiting),
      kvBlockSize: this.blockSize,
      kvBlocksTotal: kv.blocksTotal,
      kvBlocksUsed: kv.blocksUsed,
      kvBlocksFree: kv.blocksFree,
      kvBlocksCached: kv.blocksCached,
      prefixCacheQueries: kv.prefixCacheQueries,
      prefixCacheHits: kv.prefixCacheHits,
      preemptions: this.preemptions,
      cacheEvictions: kv.cacheEvictions,
      specDecodeDrafts: this.spec.drafts,
      specDecodeDraftTokens: this.spec.draftTokens,
      specDecodeAcceptedTokens: this.spec.acceptedTokens,
    };
  }

  /** Drafts for a decode row of `request`, at most `rowsFree`, without passing maxTokens. */
  private draftsFor(request: RequestState, rowsFree: number): number[] {
    const spec = this.speculation;
    if (spec === null || !request.speculate) return [];
    if (request.draftPause > 0) {
      request.draftPause--;
      return [];
    }
    // the kept drafts and the sample after them are all output tokens
    const most = Math.min(spec.numDraftTokens, rowsFree, request.maxTokens - request.numOutputTokens - 1);
    return most < 1 ? [] : proposeNgramDrafts(request.tokenIds, most, spec);
  }

  private preempt(request: RequestState): void {
    this.running.splice(this.running.indexOf(request), 1);
    this.kv.freeRequest(request.requestId);
    request.status = 'waiting';
    request.numComputedTokens = 0;
    request.numPreemptions++;
    this.preemptions++;
    // first come first served: back to the front; by priority: ahead of later arrivals of its priority
    if (this.policy === 'fcfs') this.waiting.unshift(request);
    else this.enqueue(request);
  }

  /** Puts a request in the waiting queue: last (fcfs), or after everything that goes before it by (priority, arrival). */
  private enqueue(request: RequestState): void {
    if (this.policy === 'fcfs') {
      this.waiting.push(request);
      return;
    }
    const after = this.waiting.findIndex((w) => goesBefore(request, w));
    if (after < 0) this.waiting.push(request);
    else this.waiting.splice(after, 0, request);
  }

  /** The running sequence to preempt when one needs blocks: the newest (fcfs), or the last by (priority, arrival). */
  private victim(): RequestState {
    if (this.policy === 'fcfs') return this.running[this.running.length - 1]!;
    return this.running.reduce((last, r) => (goesBefore(last, r) ? r : last));
  }

  private finish(request: RequestState, reason: FinishReason): FinishedRequest {
    removeFrom(this.running, request);
    removeFrom(this.waiting, request);
    this.kv.freeRequest(request.requestId);
    this.requests.delete(request.requestId);
    request.status = 'finished';
    request.finishReason = reason;
    return { requestId: request.requestId, reason, outputTokenIds: request.outputTokenIds, stats: request.stats() };
  }
}

/** Whether a is served before b under the priority policy: lower priority value, then earlier arrival. */
function goesBefore(a: RequestState, b: RequestState): boolean {
  return a.priority !== b.priority ? a.priority < b.priority : a.arrival < b.arrival;
}

function sampledTokensOf(requestId: string, got: number | readonly number[] | undefined, rows: number): readonly number[] {
  const tokens = typeof got === 'number' ? [got] : got;
  if (tokens === undefined || tokens.length !== rows || !tokens.every((t) => Number.isInteger(t) && t >= 0)) {
    throw new AutoGlmError('internal_error', `scheduler: no valid sampled token${rows > 1 ? 's' : ''} for request ${requestId}`);
  }
  return tokens;
}

function checkSpeculation(options: SpeculationOptions | undefined): SpeculationOptions | null {
  if (options === undefined || options.numDraftTokens === 0) return null;
  const { numDraftTokens, maxDraftRows, minNgram, maxNgram } = options;
  const fields = { numDraftTokens, maxDraftRows, minNgram, maxNgram };
  for (const [key, v] of Object.entries(fields)) {
    if (!Number.isInteger(v) || v < (key === 'maxDraftRows' ? 0 : 1)) {
      throw new AutoGlmError(
        'invalid_request',
        `scheduler: speculation.${key} must be a ${key === 'maxDraftRows' ? 'non-negative' : 'positive'} integer (got ${v})`,
      );
    }
  }
  if (minNgram > maxNgram) {
    throw new AutoGlmError('invalid_request', `scheduler: speculation.minNgram (${minNgram}) is more than maxNgram (${maxNgram})`);
  }
  return maxDraftRows === 0 ? null : { ...options };
}

function removeFrom(list: RequestState[], request: RequestState): void {
  const i = list.indexOf(request);
  if (i >= 0) list.splice(i, 1);
}

function lorasOf(requests: readonly RequestState[]): string[] {
  const names = new Set<string>();
  for (const r of requests) if (r.lora !== undefined) names.add(r.lora);
  return [...names].sort();
}
