/**
 * A deterministic stand-in for the GPU model runner, for scheduler tests. It keeps a
 * paged "KV cache" (one number per slot) and addresses it exactly as the real runner
 * does: slot(p) = blockTable[floor(p / blockSize)] * blockSize + p % blockSize.
 *
 * The "KV" of position p is a hash chained over every token up to p, read back from the
 * slot of p - 1. The next token is a function of the last row's state. So a wrong block
 * table, a prefix hit on the wrong block, a block reused while still in use or a skipped
 * chunk all change the generated tokens, and comparing with `referenceGenerate` (a plain
 * unpaged loop) catches them.
 */
import type { FinishedRequest, SchedulerOutput } from '../../src/engine/scheduler-output.js';
import { Scheduler, type SchedulerOptions } from '../../src/engine/scheduler.js';

const SEED_STATE = 0x811c9dc5;

/** Tokens per KV block in the scheduler tests. */
export const BS = 16;

/** A scheduler for the fake model: 64 blocks of BS tokens, 64 rows and 16 sequences a step, prefix caching on, unless `options` say otherwise. */
export function makeScheduler(options: Partial<SchedulerOptions> = {}): Scheduler {
  return new Scheduler({
    numBlocks: 64,
    blockSize: BS,
    maxBatchTokens: 64,
    maxBatchSequences: 16,
    enablePrefixCaching: true,
    ...options,
  });
}

function mix(state: number, tokenId: number, position: number): number {
  let h = Math.imul(state ^ (tokenId + 1), 0x01000193) >>> 0;
  h = Math.imul(h ^ (position * 0x9e3779b1), 0x85ebca6b) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}

export class FakeModel {
  private readonly kv = new Map<number, number>();

  constructor(
    readonly blockSize: number,
    readonly vocabSize = 64,
  ) {}

  /**
   * Runs one scheduled step; returns the sampled token of every sequence with sample = true,
   * or with draft tokens the token sampled after each of its last 1 + drafts rows.
   */
  step(output: SchedulerOutput): Map<string, number | number[]> {
    const sampled = new Map<string, number | number[]>();
    const written = new Set<number>();
    let rows = 0;
    for (const seq of output.sequences) {
      const end = seq.startPosition + seq.tokenIds.length;
      if (seq.blockTable.length !== Math.ceil(end / this.blockSize)) {
        throw new Error(`${seq.requestId}: block table of ${seq.blockTable.length} blocks for ${end} positions`);
      }
      const slot = (p: number): number => seq.blockTable[Math.floor(p / this.blockSize)]! * this.blockSize + (p % this.blockSize);
      let state = SEED_STATE;
      if (seq.startPosition > 0) {
        const prev = this.kv.get(slot(seq.startPosition - 1));
        if (prev === undefined) throw new Error(`${seq.requestId}: KV of position ${seq.startPosition - 1} never written`);
        state = prev;
      }
      const states = seq.tokenIds.map((tokenId, j) => {
        const p = seq.startPosition + j;
        state = mix(state, tokenId, p);
        const s = slot(p);
        if (written.has(s)) throw new Error(`slot ${s} written twice in one step`);
        written.add(s);
        this.kv.set(s, state);
        return state;
      });
      const drafts = seq.draftTokenIds?.length ?? 0;
      if (seq.sample && drafts === 0) sampled.set(seq.requestId, state % this.vocabSize);
      if (seq.sample && drafts > 0)
        sampled.set(
          seq.requestId,
          states.slice(-1 - drafts).map((x) => x % this.vocabSize),
        );
      rows += seq.tokenIds.length;
    }
    if (rows !== output.numBatchedTokens) throw new Error(`numBatchedTokens ${output.numBatchedTokens} != ${rows} rows`);
    return sampled;
  }
}

/** What an uninterrupted, unbatched, unpaged run generates. */
export function referenceGenerate(promptTokenIds: readonly number[], maxTokens: number, vocabSize = 64): number[] {
  let state = SEED_STATE;
  const out: number[] = [];
  let p = 0;
  for (const t of promptTokenIds) state = mix(state, t, p++);
  while (out.length < maxTokens) {
    const next = state % vocabSize;
    out.push(next);
    state = mix(state, next, p++);
  }
  return out;
}

export interface RunResult {
  finished: Map<string, FinishedRequest>;
  steps: number;
  outputs: SchedulerOutput[];
}

/** Drives scheduler and fake model until every request has finished. */
export function runToCompletion(
  scheduler: Scheduler,
  model: FakeModel,
  options: { maxSteps?: number; afterStep?: (output: SchedulerOutput, step: number) => void } = {},
): RunResult {
  const finished = new Map<string, FinishedRequest>();
  const outputs: SchedulerOutput[] = [];
  const maxSteps = options.maxSteps ?? 100_000;
  let steps = 0;
  while (scheduler.hasUnfinished()) {
    if (steps++ >= maxSteps) throw new Error(`not finished after ${maxSteps} steps`);
    const output = scheduler.schedule();
    outputs.push(output);
    const result = scheduler.updateFromOutput(model.step(output));
    for (const f of result.finished) finished.set(f.requestId, f);
    options.afterStep?.(output, steps);
  }
  return { finished, steps, outputs };
}

/** Prompt of n token ids in [1, vocab), seeded. */
export function makePrompt(n: number, seed: number, vocabSize = 64): number[] {
  let x = seed * 2654435761 + 1;
  return Array.from({ length: n }, () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return 1 + ((x >>> 8) % (vocabSize - 1));
  });
}
