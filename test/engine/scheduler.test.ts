import { describe, expect, it } from 'vitest';
import { isAutoGlmError, type ErrorCode } from '../../src/errors.js';
import { BS, FakeModel, makePrompt, makeScheduler, referenceGenerate, runToCompletion } from './fake-model.js';

function expectError(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(isAutoGlmError(err, code), String(err)).toBe(true);
  if (message) expect((err as Error).message).toMatch(message);
}

describe('Scheduler', () => {
  it('generates what an unbatched run generates, for 16 concurrent prompts of different lengths', () => {
    const s = makeScheduler({ numBlocks: 256, maxBatchTokens: 96 });
    const prompts = Array.from({ length: 16 }, (_, i) => makePrompt(5 + i * 13, i));
    prompts.forEach((p, i) => s.addRequest({ requestId: `r${i}`, promptTokenIds: p, maxTokens: 10 + i }));
    const { finished } = runToCompletion(s, new FakeModel(BS));
    prompts.forEach((p, i) => {
      const f = finished.get(`r${i}`)!;
      expect(f.reason).toBe('length');
      expect(f.outputTokenIds).toEqual(referenceGenerate(p, 10 + i));
    });
    expect(s.stats()).toMatchObject({ numWaiting: 0, numRunning: 0, kvBlocksUsed: 0, kvBlocksFree: 256 });
  });

  it('cuts long prompts into chunks within the token budget and samples only after the last', () => {
    const s = makeScheduler({ maxBatchTokens: 32 });
    const prompt = makePrompt(100, 1);
    s.addRequest({ requestId: 'a', promptTokenIds: prompt, maxTokens: 3 });
    const { outputs, finished } = runToCompletion(s, new FakeModel(BS));
    const chunks = outputs.map((o) => o.sequences[0]!);
    expect(chunks.map((c) => c.tokenIds.length)).toEqual([32, 32, 32, 4, 1, 1]);
    expect(chunks.map((c) => c.startPosition)).toEqual([0, 32, 64, 96, 100, 101]);
    expect(chunks.map((c) => c.sample)).toEqual([false, false, false, true, true, true]);
    expect(chunks[1]!.tokenIds).toEqual(prompt.slice(32, 64));
    expect(chunks[3]!.blockTable).toHaveLength(7);
    expect(finished.get('a')!.outputTokenIds).toEqual(referenceGenerate(prompt, 3));
  });

  it('scores a prompt in chunks of at most maxScoreRows rows, each row against the prompt token after it, with no prefix reuse', () => {
    const s = makeScheduler({ maxBatchTokens: 64, maxScoreRows: 20 });
    const prompt = makePrompt(50, 3);
    // a cached copy of the prompt's blocks, which the scored request must not reuse
    const model = new FakeModel(BS);
    s.addRequest({ requestId: 'warm', promptTokenIds: prompt, maxTokens: 1 });
    runToCompletion(s, model);
    s.addRequest({ requestId: 'a', promptTokenIds: prompt, maxTokens: 2, scorePrompt: true });
    s.addRequest({ requestId: 'b', promptTokenIds: prompt, maxTokens: 2 });
    const { outputs, finished } = runToCompletion(s, model);
    const chunks = outputs.flatMap((o) => o.sequences.filter((q) => q.requestId === 'a'));
    // 49 scored rows (the last prompt row is sampled): 20 + 20 + 9, then the rest of the prompt with it
    expect(chunks.map((c) => c.tokenIds.length)).toEqual([20, 20, 10, 1]);
    expect(chunks.map((c) => c.scoreTargets?.length)).toEqual([20, 20, 9, undefined]);
    for (const c of chunks.slice(0, 3))
      expect(c.scoreTargets).toEqual(prompt.slice(c.startPosition + 1, c.startPosition + 1 + c.scoreTargets!.length));
    expect(s.requestStats('a')).toBeNull();
    expect(finished.get('a')!.stats.numCachedPromptTokens).toBe(0);
    // the unscored request beside it reuses the cached blocks and is scored nowhere
    expect(finished.get('b')!.stats.numCachedPromptTokens).toBe(48);
    expect(outputs.flatMap((o) => o.sequences.filter((q) => q.requestId === 'b')).every((q) => q.scoreTargets === undefined)).toBe(true);
    expect(finished.get('a')!.outputTokenIds).toEqual(referenceGenerate(prompt, 2));
    // nowhere to score: refused at once
    expectError(
      () => makeScheduler().addRequest({ requestId: 'x', promptTokenIds: prompt, maxTokens: 2, scorePrompt: true }),
      'invalid_request',
      /prompt logprobs/,
    );
  });

  it('schedules every decode row first and gives prefill chunks only the budget left', () => {
    const s = makeScheduler({ maxBatchTokens: 24, maxBatchSequences: 8 });
    for (let i = 0; i < 4; i++) s.addRequest({ requestId: `d${i}`, promptTokenIds: makePrompt(4, i), maxTokens: 40 });
    const model = new FakeModel(BS);
    s.updateFromOutput(model.step(s.schedule())); // 4 prompts of 4 tokens in one step
    const longPrompt = makePrompt(200, 99);
    s.addRequest({ requestId: 'long', promptTokenIds: longPrompt, maxTokens: 2 });
    let sawLongChunk = false;
    const { finished } = runToCompletion(s, model, {
      afterStep: (out) => {
        expect(out.numBatchedTokens).toBeLessThanOrEqual(24);
        const decodes = out.sequences.filter((q) => q.requestId.startsWith('d'));
        // decodes lead the batch, one row each
        expect(out.sequences.slice(0, decodes.length)).toEqual(decodes);
        for (const d of decodes) expect(d.tokenIds).toHaveLength(1);
        const long = out.sequences.find((q) => q.requestId === 'long');
        if (long !== undefined && !long.sample) {
          sawLongChunk = true;
          expect(long.tokenIds.length).toBe(24 - decodes.length);
        }
      },
    });
    expect(sawLongChunk).toBe(true);
    expect(finished.get('long')!.outputTokenIds).toEqual(referenceGenerate(longPrompt, 2));
    for (let i = 0; i < 4; i++) {
      expect(finished.get(`d${i}`)!.outputTokenIds).toEqual(referenceGenerate(makePrompt(4, i), 40));
    }
  });

  it('runs at most maxBatchSequences sequences at once', () => {
    const s = makeScheduler({ maxBatchSequences: 3, maxBatchTokens: 64 });
    for (let i = 0; i < 7; i++) s.addRequest({ requestId: `r${i}`, promptTokenIds: makePrompt(3, i), maxTokens: 5 });
    const { finished } = runToCompletion(s, new FakeModel(BS), {
      afterStep: (out) => {
        expect(out.sequences.length).toBeLessThanOrEqual(3);
        expect(s.numRunning).toBeLessThanOrEqual(3);
      },
    });
    expect(finished.size).toBe(7);
  });

  it('preempts the newest sequence under memory pressure; every request still finishes correctly and no block leaks', () => {
    // 12 blocks of 16 = 192 slots; 8 requests needing up to 60 slots each at the end.
    const s = makeScheduler({ numBlocks: 12, maxBatchTokens: 64, maxBatchSequences: 8 });
    const prompts = Array.from({ length: 8 }, (_, i) => makePrompt(10 + 3 * i, 100 + i));
    prompts.forEach((p, i) => s.addRequest({ requestId: `r${i}`, promptTokenIds: p, maxTokens: 30 }));
    const preempted: string[] = [];
    const { finished } = runToCompletion(s, new FakeModel(BS), {
      afterStep: (out) => {
        preempted.push(...out.preempted);
        for (const id of out.preempted) expect(out.sequences.some((q) => q.requestId === id)).toBe(false);
        expect(s.stats().kvBlocksUsed).toBeLessThanOrEqual(12);
      },
    });
    expect(preempted.length).toBeGreaterThan(0);
    expect(s.stats().preemptions).toBe(preempted.length);
    prompts.forEach((p, i) => expect(finished.get(`r${i}`)!.outputTokenIds).toEqual(referenceGenerate(p, 30)));
    const someone = finished.get(preempted[0]!)!;
    expect(someone.stats.numPreemptions).toBeGreaterThan(0);
    expect(s.stats()).toMatchObject({ kvBlocksUsed: 0, kvBlocksFree: 12, numRunning: 0, numWaiting: 0 });
  });

  it('scores prompts under memory pressure: preempted scored requests are scored again from the start, within the budget, and finish correctly', () => {
    const s = makeScheduler({ numBlocks: 12, maxBatchTokens: 64, maxBatchSequences: 8, maxScoreRows: 24 });
    const prompts = Array.from({ length: 8 }, (_, i) => makePrompt(30 + 3 * i, 200 + i));
    prompts.forEach((p, i) => s.addRequest({ requestId: `r${i}`, promptTokenIds: p, maxTokens: 20, scorePrompt: i % 2 === 0 }));
    const scoredRows = new Map<string, Set<number>>();
    const preempted = new Set<string>();
    const { finished } = runToCompletion(s, new FakeModel(BS), {
      afterStep: (out) => {
        out.preempted.forEach((id) => preempted.add(id));
        let rows = 0;
        for (const q of out.sequences) {
          if (!q.scoreTargets) continue;
          const i = Number(q.requestId.slice(1));
          expect(i % 2).toBe(0);
          // row j scores the prompt token after it, and only prompt tokens are targets
          expect(q.scoreTargets).toEqual(prompts[i]!.slice(q.startPosition + 1, q.startPosition + 1 + q.scoreTargets.length));
          const seen = scoredRows.get(q.requestId) ?? new Set<number>();
          q.scoreTargets.forEach((_, j) => seen.add(q.startPosition + j));
          scoredRows.set(q.requestId, seen);
          rows += q.scoreTargets.length;
        }
        expect(rows).toBeLessThanOrEqual(24);
      },
    });
    // scored requests among them
    expect([...preempted].some((id) => Number(id.slice(1)) % 2 === 0)).toBe(true);
    prompts.forEach((p, i) => {
      expect(finished.get(`r${i}`)!.outputTokenIds).toEqual(referenceGenerate(p, 20));
      // every position but the last (whose next token is sampled) is scored, for scored requests only
      if (i % 2 === 0) expect(scoredRows.get(`r${i}`)!.size).toBe(p.length - 1);
      else expect(scoredRows.has(`r${i}`)).toBe(false);
    });
    expect(s.stats()).toMatchObject({ kvBlocksUsed: 0, kvBlocksFree: 12, numRunning: 0, numWaiting: 0 });
  });

  it('puts a preempted request back at the front of the queue, ahead of later arrivals', () => {
    const s = makeScheduler({ numBlocks: 4, maxBatchTokens: 64, maxBatchSequences: 4, enablePrefixCaching: false });
    s.addRequest({ requestId: 'old', promptTokenIds: makePrompt(30, 1), maxTokens: 30 });
    s.addRequest({ requestId: 'new', promptTokenIds: makePrompt(30, 2), maxTokens: 30 });
    const model = new FakeModel(BS);
    let out = s.schedule(); // both prompts: 2 + 2 blocks, the pool is full
    expect(out.sequences.map((q) => q.requestId)).toEqual(['old', 'new']);
    s.updateFromOutput(model.step(out));
    s.addRequest({ requestId: 'later', promptTokenIds: makePrompt(5, 3), maxTokens: 2 });
    // 'old' crosses into its third block at position 32: 'new' must give way.
    for (;;) {
      out = s.schedule();
      s.updateFromOutput(model.step(out));
      if (out.preempted.length > 0) break;
    }
    expect(out.preempted).toEqual(['new']);
    expect(out.sequences.map((q) => q.requestId)).toEqual(['old']);
    expect(s.numWaiting).toBe(2);
    expect(s.requestStats('new')).toMatchObject({ status: 'waiting', numPreemptions: 1 });
    const { finished } = runToCompletion(s, model);
    expect(finished.get('new')!.outputTokenIds).toEqual(referenceGenerate(makePrompt(30, 2), 30));
    // recomputed: prompt rows counted twice
    expect(finished.get('new')!.stats.numComputedPromptTokens).toBe(60);
  });

  it('frees a cancelled request’s blocks at once and leaves the others undisturbed', () => {
    const s = makeScheduler();
    const pa = makePrompt(40, 1);
    const pb = makePrompt(40, 2);
    s.addRequest({ requestId: 'a', promptTokenIds: pa, maxTokens: 50 });
    s.addRequest({ requestId: 'b', promptTokenIds: pb, maxTokens: 50 });
    const model = new FakeModel(BS);
    for (let i = 0; i < 5; i++) s.updateFromOutput(model.step(s.schedule()));
    const before = s.stats().kvBlocksUsed;
    const heldByB = s.blockTable('b').length;
    expect(heldByB).toBe(3);
    const done = s.finishRequest('b', 'cancelled')!;
    expect(done.reason).toBe('cancelled');
    expect(done.outputTokenIds.length).toBeGreaterThan(0);
    expect(done.outputTokenIds).toEqual(referenceGenerate(pb, done.outputTokenIds.length));
    expect(s.stats().kvBlocksUsed).toBe(before - heldByB);
    expect(s.finishRequest('b', 'cancelled')).toBeNull();
    const { finished } = runToCompletion(s, model);
    expect(finished.get('a')!.outputTokenIds).toEqual(referenceGenerate(pa, 50));
    expect(s.stats().kvBlocksUsed).toBe(0);
  });

  it('ignores the in-flight step’s result for a request finished while the step ran', () => {
    const s = makeScheduler();
    const pc = makePrompt(20, 3);
    s.addRequest({ requestId: 'a', promptTokenIds: makePrompt(20, 1), maxTokens: 50 });
    s.addRequest({ requestId: 'c', promptTokenIds: pc, maxTokens: 8 });
    const model = new FakeModel(BS);
    s.updateFromOutput(model.step(s.schedule()));
    const out = s.schedule();
    expect(out.sequences).toHaveLength(2);
    s.finishRequest('a', 'stop'); // e.g. a stop string found while the GPU ran the step
    expect(s.blockTable('a')).toEqual([]);
    expect(s.updateFromOutput(model.step(out)).finished).toEqual([]);
    const { finished } = runToCompletion(s, model);
    expect(finished.get('c')!.outputTokenIds).toEqual(referenceGenerate(pc, 8));
    expect(finished.has('a')).toBe(false);
    expect(s.stats().kvBlocksUsed).toBe(0);
  });

  it('continues a resumed request exactly where the uninterrupted run would be', () => {
    const prompt = makePrompt(23, 7);
    const full = referenceGenerate(prompt, 20);
    const s = makeScheduler({ maxBatchTokens: 16 });
    s.addRequest({ requestId: 'r', promptTokenIds: prompt, maxTokens: 20, resumeTokenIds: full.slice(0, 12) });
    const { finished, outputs } = runToCompletion(s, new FakeModel(BS));
    // prompt + resumed tokens are prefilled (35 rows: 16 + 16 + 3) before the first sample
    expect(outputs.slice(0, 3).map((o) => [o.sequences[0]!.tokenIds.length, o.sequences[0]!.sample])).toEqual([
      [16, false],
      [16, false],
      [3, true],
    ]);
    const f = finished.get('r')!;
    expect(f.outputTokenIds).toEqual(full);
    expect(f.stats).toMatchObject({ numResumeTokens: 12, numOutputTokens: 20, numComputedPromptTokens: 35 });
    expect(outputs).toHaveLength(3 + 7);
  });

  it('rejects requests it can never serve, with typed errors', () => {
    const s = makeScheduler({ numBlocks: 4 });
    expectError(
      () => s.addRequest({ requestId: 'x', promptTokenIds: makePrompt(60, 1), maxTokens: 6 }),
      'context_length_exceeded',
      /holds 64/,
    );
    s.addRequest({ requestId: 'fits', promptTokenIds: makePrompt(60, 1), maxTokens: 5 }); // 64 KV slots
    expectError(() => s.addRequest({ requestId: 'fits', promptTokenIds: [1], maxTokens: 1 }), 'invalid_request');
    expectError(() => s.addRequest({ requestId: 'e', promptTokenIds: [], maxTokens: 1 }), 'invalid_request');
    expectError(() => s.addRequest({ requestId: 'n', promptTokenIds: [1, -2], maxTokens: 1 }), 'invalid_request');
    expectError(() => s.addRequest({ requestId: 'm', promptTokenIds: [1], maxTokens: 0 }), 'invalid_request');
    expectError(() => s.addRequest({ requestId: 'r', promptTokenIds: [1], maxTokens: 2, resumeTokenIds: [3, 4] }), 'invalid_request');
    expectError(() => makeScheduler({ maxBatchTokens: 4, maxBatchSequences: 8 }), 'invalid_request');
    expect(s.numWaiting).toBe(1);
  });

  it('insists on one updateFromOutput per step and a sampled token for every sampling sequence', () => {
    const s = makeScheduler();
    s.addRequest({ requestId: 'a', promptTokenIds: [1, 2, 3], maxTokens: 4 });
    const out = s.schedule();
    expectError(() => s.schedule(), 'internal_error');
    expectError(() => s.updateFromOutput(new Map()), 'internal_error', /no valid sampled token/);
    expect(out.sequences[0]!.sample).toBe(true);
  });
});
