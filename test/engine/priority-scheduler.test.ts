/**
 * The scheduler's priority policy (vLLM's --scheduling-policy priority), against the fake
 * model: admission by (priority, arrival), preemption of the running sequence with the
 * largest (priority, arrival), and outputs that stay those of an unbatched run.
 */
import { describe, expect, it } from 'vitest';
import { Scheduler, type SchedulerOptions } from '../../src/engine/scheduler.js';
import type { FinishedRequest } from '../../src/engine/scheduler-output.js';
import { isAutoGlmError } from '../../src/errors.js';
import { thrown } from '../helpers/caught.js';
import { BS, FakeModel, makePrompt, makeScheduler, referenceGenerate } from './fake-model.js';

function scheduler(options: Partial<SchedulerOptions> = {}): Scheduler {
  return makeScheduler({ maxBatchSequences: 8, policy: 'priority', ...options });
}

/** Runs to the end; the order in which requests got their first sampled token, and what they finished with. */
function run(s: Scheduler, model = new FakeModel(BS)): { firstTokenOrder: string[]; finished: Map<string, FinishedRequest> } {
  const firstTokenOrder: string[] = [];
  const finished = new Map<string, FinishedRequest>();
  while (s.hasUnfinished()) {
    const out = s.schedule();
    const update = s.updateFromOutput(model.step(out));
    for (const q of out.sequences) if (q.sample && !firstTokenOrder.includes(q.requestId)) firstTokenOrder.push(q.requestId);
    for (const f of update.finished) finished.set(f.requestId, f);
  }
  return { firstTokenOrder, finished };
}

describe('Scheduler, priority policy', () => {
  it('admits waiting requests by priority (lowest first), then arrival; fcfs by arrival alone', () => {
    const arrivals: [string, number][] = [
      ['late-low', 5],
      ['a', 0],
      ['urgent', -3],
      ['b', 0],
      ['urgent-2', -3],
    ];
    const byPolicy = (policy: 'fcfs' | 'priority'): string[] => {
      // one sequence at a time: each request runs to its end before the next is admitted
      const s = scheduler({ maxBatchSequences: 1, policy });
      for (const [id, priority] of arrivals)
        s.addRequest({
          requestId: id,
          promptTokenIds: makePrompt(10, id.length),
          maxTokens: 3,
          ...(policy === 'priority' ? { priority } : {}),
        });
      return run(s).firstTokenOrder;
    };
    expect(byPolicy('priority')).toEqual(['urgent', 'urgent-2', 'a', 'b', 'late-low']);
    expect(byPolicy('fcfs')).toEqual(['late-low', 'a', 'urgent', 'b', 'urgent-2']);
  });

  it('a request arriving later with a lower value goes before those already waiting, not before those running', () => {
    const s = scheduler({ maxBatchSequences: 1 });
    const model = new FakeModel(BS);
    s.addRequest({ requestId: 'running', promptTokenIds: makePrompt(8, 1), maxTokens: 6, priority: 9 });
    s.updateFromOutput(model.step(s.schedule()));
    s.addRequest({ requestId: 'waiting', promptTokenIds: makePrompt(8, 2), maxTokens: 2, priority: 0 });
    s.addRequest({ requestId: 'urgent', promptTokenIds: makePrompt(8, 3), maxTokens: 2, priority: -1 });
    expect(run(s, model).firstTokenOrder).toEqual(['running', 'urgent', 'waiting']);
  });

  it('under memory pressure preempts the running request with the largest (priority, arrival), not the newest; all finish correctly', () => {
    // 8 blocks of 16: three 30-token prompts growing to 69 tokens (5 blocks each) cannot all stay
    const s = scheduler({ numBlocks: 8, maxBatchTokens: 128 });
    const prompts = { low: makePrompt(30, 1), high: makePrompt(30, 2), mid: makePrompt(30, 3) };
    const model = new FakeModel(BS);
    // 'low' runs first, alone: the newest running requests are the two that come after it
    s.addRequest({ requestId: 'low', promptTokenIds: prompts.low, maxTokens: 40, priority: 7 });
    s.updateFromOutput(model.step(s.schedule()));
    s.addRequest({ requestId: 'high', promptTokenIds: prompts.high, maxTokens: 40, priority: -2 });
    s.addRequest({ requestId: 'mid', promptTokenIds: prompts.mid, maxTokens: 40, priority: 1 });
    const preemptedFirst: string[] = [];
    const finished = new Map<string, FinishedRequest>();
    while (s.hasUnfinished()) {
      const out = s.schedule();
      preemptedFirst.push(...out.preempted);
      for (const f of s.updateFromOutput(model.step(out)).finished) finished.set(f.requestId, f);
    }
    expect(preemptedFirst.length).toBeGreaterThan(0);
    // 'high' is never the victim while a lower-priority request runs; 'low' goes first
    expect(preemptedFirst[0]).toBe('low');
    expect(finished.get('high')!.stats.numPreemptions).toBe(0);
    for (const [id, p] of Object.entries(prompts)) expect(finished.get(id)!.outputTokenIds).toEqual(referenceGenerate(p, 40));
    expect(s.stats()).toMatchObject({ kvBlocksUsed: 0, numRunning: 0 });
  });

  it('refuses a priority other than 0 under fcfs, and one that is not an integer, as invalid_request naming priority', () => {
    const fcfs = scheduler({ policy: 'fcfs' });
    fcfs.addRequest({ requestId: 'zero', promptTokenIds: [1, 2], maxTokens: 1, priority: 0 });
    for (const [s, priority] of [
      [fcfs, 1],
      [scheduler(), 1.5],
      [scheduler(), Number.NaN],
    ] as const) {
      const e = thrown(() => s.addRequest({ requestId: `p${priority}`, promptTokenIds: [1, 2], maxTokens: 1, priority }));
      expect(isAutoGlmError(e, 'invalid_request'), String(e)).toBe(true);
      expect((e as { param?: string }).param).toBe('priority');
    }
    expect(String(thrown(() => fcfs.checkPriority(3)))).toMatch(/scheduling-policy priority/);
    expect(thrown(() => scheduler({ policy: 'lifo' as 'fcfs' }))).toBeDefined();
  });
});
