/**
 * The scheduler's half of speculative decoding, against the fake model: its "KV" is a hash
 * chained through every earlier position, so a draft row whose KV were kept after it was
 * refused, a rollback to the wrong position or a cached block holding a guess all change the
 * generated tokens, which must equal an unbatched, unspeculated run's. A 3-token vocabulary
 * makes prompt lookup propose at almost every step and the fake sampler agree with some drafts
 * and not others.
 */
import { describe, expect, it } from 'vitest';
import { Scheduler, type SchedulerOptions, type SpeculationOptions } from '../../src/engine/scheduler.js';
import type { SchedulerOutput } from '../../src/engine/scheduler-output.js';
import type { FinishedRequest } from '../../src/engine/scheduler-output.js';
import { isAutoGlmError } from '../../src/errors.js';
import { BS, FakeModel, makePrompt, makeScheduler, referenceGenerate } from './fake-model.js';

const VOCAB = 3;
const SPECULATION: SpeculationOptions = { numDraftTokens: 4, maxDraftRows: 64, minNgram: 2, maxNgram: 4 };

function scheduler(options: Partial<SchedulerOptions> = {}): Scheduler {
  return makeScheduler({ numBlocks: 128, maxBatchTokens: 96, speculation: SPECULATION, ...options });
}

interface Run {
  finished: Map<string, FinishedRequest>;
  outputs: SchedulerOutput[];
  /** Per step, tokens appended per request. */
  appended: Map<string, number>[];
}

function run(s: Scheduler, model: FakeModel): Run {
  const finished = new Map<string, FinishedRequest>();
  const outputs: SchedulerOutput[] = [];
  const appended: Map<string, number>[] = [];
  for (let steps = 0; s.hasUnfinished(); steps++) {
    if (steps > 10_000) throw new Error('not finished');
    const out = s.schedule();
    outputs.push(out);
    const update = s.updateFromOutput(model.step(out));
    appended.push(update.appended);
    for (const f of update.finished) finished.set(f.requestId, f);
  }
  return { finished, outputs, appended };
}

describe('Scheduler with speculative decoding (prompt lookup)', () => {
  it('generates exactly what an unbatched run generates, for 16 concurrent prompts, each kept draft saving a decode row', () => {
    const prompts = Array.from({ length: 16 }, (_, i) => makePrompt(5 + i * 9, i, VOCAB));
    const runWith = (speculation: SpeculationOptions | undefined): Run & { accepted: number } => {
      const s = scheduler(speculation ? { speculation } : { speculation: undefined });
      prompts.forEach((p, i) => s.addRequest({ requestId: `r${i}`, promptTokenIds: p, maxTokens: 20 + i, speculate: true }));
      const r = run(s, new FakeModel(BS, VOCAB));
      // nothing leaks: every block is back in the pool
      expect(s.stats()).toMatchObject({ numRunning: 0, kvBlocksUsed: 0, kvBlocksFree: 128 });
      return { ...r, accepted: s.stats().specDecodeAcceptedTokens };
    };
    const plain = runWith(undefined);
    const spec = runWith(SPECULATION);
    prompts.forEach((p, i) => {
      expect(spec.finished.get(`r${i}`)!.outputTokenIds).toEqual(referenceGenerate(p, 20 + i, VOCAB));
      expect(spec.finished.get(`r${i}`)!.reason).toBe('length');
    });
    // a sequence step samples one token, or with drafts one plus those kept
    const sampledSteps = (r: Run): number => r.outputs.reduce((n, o) => n + o.sequences.filter((q) => q.sample).length, 0);
    expect(spec.accepted).toBeGreaterThan(0);
    expect(sampledSteps(plain) - sampledSteps(spec)).toBe(spec.accepted);
    const drafted = spec.outputs.flatMap((o) => o.sequences.filter((q) => q.draftTokenIds));
    expect(drafted.length).toBeGreaterThan(0);
    // drafts are the tail of the rows, and every row of a drafting sequence is sampled
    for (const q of drafted) {
      expect(q.sample).toBe(true);
      expect(q.tokenIds.slice(1)).toEqual(q.draftTokenIds);
      expect(q.draftTokenIds!.length).toBeLessThanOrEqual(SPECULATION.numDraftTokens);
    }
  });

  it('counts drafts and kept drafts, and moves each sequence on by exactly the tokens it kept', () => {
    const s = scheduler();
    const prompt = makePrompt(40, 7, VOCAB);
    s.addRequest({ requestId: 'a', promptTokenIds: prompt, maxTokens: 60, speculate: true });
    const r = run(s, new FakeModel(BS, VOCAB));
    const seqs = r.outputs.map((o) => o.sequences[0]!);
    let kept = 0;
    let draftTokens = 0;
    for (let i = 0; i + 1 < seqs.length; i++) {
      const n = r.appended[i]!.get('a') ?? 0;
      const d = seqs[i]!.draftTokenIds?.length ?? 0;
      // the next step starts after the rows this one kept: all but the refused drafts
      expect(seqs[i + 1]!.startPosition).toBe(seqs[i]!.startPosition + seqs[i]!.tokenIds.length - (d - (n - 1)));
      draftTokens += d;
      if (d > 0) kept += n - 1;
      expect(n - 1).toBeLessThanOrEqual(d);
    }
    const stats = s.stats();
    expect(stats.specDecodeDraftTokens).toBe(draftTokens + (seqs.at(-1)!.draftTokenIds?.length ?? 0));
    expect(stats.specDecodeAcceptedTokens).toBeGreaterThan(0);
    expect(stats.specDecodeAcceptedTokens).toBeLessThan(stats.specDecodeDraftTokens);
    expect(stats.specDecodeAcceptedTokens).toBeGreaterThanOrEqual(kept);
    expect(stats.specDecodeDrafts).toBe(seqs.filter((q) => q.draftTokenIds).length);
    expect(r.finished.get('a')!.outputTokenIds).toEqual(referenceGenerate(prompt, 60, VOCAB));
  });

  it('caches only blocks of kept tokens: a later request over the same text reuses them and still generates correctly', () => {
    const s = scheduler();
    const model = new FakeModel(BS, VOCAB);
    const prompt = makePrompt(21, 3, VOCAB);
    s.addRequest({ requestId: 'a', promptTokenIds: prompt, maxTokens: 70, speculate: true });
    const first = run(s, model).finished.get('a')!.outputTokenIds;
    // the first request's prompt and output, as the prompt of a second: its blocks come from the cache
    const again = [...prompt, ...first];
    s.addRequest({ requestId: 'b', promptTokenIds: again, maxTokens: 30, speculate: true });
    const r = run(s, model);
    expect(r.finished.get('b')!.stats.numCachedPromptTokens).toBe(Math.floor((again.length - 1) / BS) * BS);
    expect(r.finished.get('b')!.outputTokenIds).toEqual(referenceGenerate(again, 30, VOCAB));
  });

  it('never drafts past maxTokens, nor for requests that do not allow it', () => {
    const s = scheduler();
    // a loop the lookup predicts perfectly would otherwise draft 4 at the last steps too
    s.addRequest({ requestId: 'short', promptTokenIds: [1, 2, 1, 2, 1, 2, 1, 2], maxTokens: 3, speculate: true });
    s.addRequest({ requestId: 'plain', promptTokenIds: [1, 2, 1, 2, 1, 2, 1, 2], maxTokens: 12 });
    const r = run(s, new FakeModel(BS, VOCAB));
    for (const o of r.outputs) {
      for (const q of o.sequences) {
        if (q.requestId === 'plain') expect(q.draftTokenIds).toBeUndefined();
        // drafts + the sample after them never pass the 3 tokens asked for
        const outputSoFar = q.startPosition + 1 - 8;
        if (q.draftTokenIds) expect(outputSoFar + q.draftTokenIds.length + 1).toBeLessThanOrEqual(3);
      }
    }
    expect(r.finished.get('short')!.outputTokenIds).toEqual(referenceGenerate([1, 2, 1, 2, 1, 2, 1, 2], 3, VOCAB));
    expect(r.finished.get('plain')!.outputTokenIds).toEqual(referenceGenerate([1, 2, 1, 2, 1, 2, 1, 2], 12, VOCAB));
  });

  it('gives drafts only rows the step has to spare: every decode row first, within maxDraftRows', () => {
    const prompts = Array.from({ length: 12 }, (_, i) => makePrompt(10, 50 + i, VOCAB));
    // 12 decoding sequences and 16 rows a step: 4 rows for drafts; maxDraftRows 3 takes one more away
    const s = scheduler({ maxBatchTokens: 16, maxBatchSequences: 12, speculation: { ...SPECULATION, maxDraftRows: 3 } });
    prompts.forEach((p, i) => s.addRequest({ requestId: `r${i}`, promptTokenIds: p, maxTokens: 25, speculate: true }));
    const model = new FakeModel(BS, VOCAB);
    const finished = new Map<string, FinishedRequest>();
    let drafted = 0;
    while (s.hasUnfinished()) {
      const running = s.numRunning;
      const o = s.schedule();
      const draftRows = o.sequences.reduce((n, q) => n + (q.draftTokenIds?.length ?? 0), 0);
      expect(draftRows).toBeLessThanOrEqual(3);
      expect(o.numBatchedTokens).toBeLessThanOrEqual(16);
      // no running sequence went without its row for another's drafts
      if (draftRows > 0) expect(o.sequences.length).toBeGreaterThanOrEqual(running);
      drafted += draftRows;
      for (const f of s.updateFromOutput(model.step(o)).finished) finished.set(f.requestId, f);
    }
    expect(drafted).toBeGreaterThan(0);
    prompts.forEach((p, i) => expect(finished.get(`r${i}`)!.outputTokenIds).toEqual(referenceGenerate(p, 25, VOCAB)));
  });

  it('under memory pressure drops drafts rather than preempt for them; every request still finishes correctly with no leak', () => {
    const prompts = Array.from({ length: 6 }, (_, i) => makePrompt(20 + i * 7, 90 + i, VOCAB));
    // 12 blocks of 16: not enough for all six at once
    const s = scheduler({ numBlocks: 12, maxBatchTokens: 64 });
    prompts.forEach((p, i) => s.addRequest({ requestId: `r${i}`, promptTokenIds: p, maxTokens: 40, speculate: true }));
    const r = run(s, new FakeModel(BS, VOCAB));
    prompts.forEach((p, i) => expect(r.finished.get(`r${i}`)!.outputTokenIds).toEqual(referenceGenerate(p, 40, VOCAB)));
    expect(s.stats()).toMatchObject({ kvBlocksUsed: 0, kvBlocksFree: 12 });
    expect(s.stats().preemptions).toBeGreaterThan(0);
    expect(s.stats().specDecodeDrafts).toBeGreaterThan(0);
  });

  it('pauses drafting for 1, 3, then 7 decode steps while every draft fails, and drafts every step again once one is kept', () => {
    const s = scheduler();
    // every pair of 1s and 2s occurs in the prompt: whatever follows, prompt lookup proposes
    s.addRequest({ requestId: 'a', promptTokenIds: [1, 1, 2, 2, 1, 2, 1, 1, 2, 2, 1, 2], maxTokens: 90, speculate: true });
    let agree = false;
    const drafting: boolean[] = [];
    while (s.hasUnfinished()) {
      const q = s.schedule().sequences[0]!;
      const drafts = q.draftTokenIds ?? [];
      if (q.startPosition > 0) drafting.push(drafts.length > 0);
      if (drafting.length === 40) agree = true;
      // the "model" refuses the first draft (samples the other token) until told to agree
      const first = drafts.length === 0 ? 1 : agree ? drafts[0]! : 3 - drafts[0]!;
      const tokens = [first, ...drafts.slice(1), 1];
      s.updateFromOutput(new Map([['a', drafts.length === 0 ? first : tokens]]));
    }
    const pattern = drafting.map((d) => (d ? 'D' : '.')).join('');
    // drafts at decode steps 1, 3, 7, 15, 23, 31: pauses of 1, 3, then 7 steps
    expect(pattern.slice(0, 32)).toBe('D.D...D.......D.......D.......D.');
    // once a draft is kept the pause ends: after that draft step, every step drafts
    const after = pattern.slice(40);
    expect(after).toMatch(/^\.*D+$/);
    expect(s.stats().specDecodeAcceptedTokens).toBeGreaterThan(0);
  });

  it('insists on one sampled token per sampled row of a drafting sequence, and refuses bad options', () => {
    const s = scheduler();
    // whatever comes after the last 2, "2 t" occurred before
    s.addRequest({ requestId: 'a', promptTokenIds: [2, 0, 2, 1, 2, 2, 2], maxTokens: 10, speculate: true });
    const model = new FakeModel(BS, VOCAB);
    s.updateFromOutput(model.step(s.schedule())); // the prompt
    const out = s.schedule();
    expect(out.sequences[0]!.draftTokenIds?.length).toBeGreaterThan(0);
    let err: unknown;
    try {
      s.updateFromOutput(new Map([['a', 1]]));
    } catch (e) {
      err = e;
    }
    expect(isAutoGlmError(err, 'internal_error')).toBe(true);
    for (const bad of [{ numDraftTokens: -1 }, { minNgram: 0 }, { minNgram: 5, maxNgram: 4 }, { maxDraftRows: 1.5 }]) {
      err = undefined;
      try {
        scheduler({ speculation: { ...SPECULATION, ...bad } });
      } catch (e) {
        err = e;
      }
      expect(isAutoGlmError(err, 'invalid_request'), JSON.stringify(bad)).toBe(true);
    }
    // 0 draft tokens or rows: off
    expect(scheduler({ speculation: { ...SPECULATION, numDraftTokens: 0 } }).speculation).toBeNull();
    expect(scheduler({ speculation: { ...SPECULATION, maxDraftRows: 0 } }).speculation).toBeNull();
  });
});
