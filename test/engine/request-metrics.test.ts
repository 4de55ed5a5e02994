/**
 * Per-request timings on the real GPU path (demo-stories): the final event (and complete())
 * carries the request's time to first token, time per output token and end-to-end time,
 * consistent with the wall time the caller saw and with the engine-wide sums; a
 * response-cache hit says so and reports its own (replay) timings; KV block counts add up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { RequestMetrics, TokenEvent } from '../../src/engine/types.js';

const DEMO = 'models/demo-stories';

describe('per-request metrics', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO);
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('complete() reports TTFT, TPOT and e2e consistent with the wall time and the token count', async () => {
    const before = engine.stats();
    const t0 = performance.now();
    const result = await engine.complete({
      prompt: 'Once upon a time, a dog',
      maxTokens: 20,
      ignoreEos: true,
      sampling: { temperature: 0 },
    });
    const wallMs = performance.now() - t0;
    const m = result.metrics!;
    expect(m.generatedTokens).toBe(20);
    expect(result.tokenIds).toHaveLength(20);
    expect(m.timeToFirstTokenMs).toBeGreaterThan(0);
    expect(m.timePerOutputTokenMs).toBeGreaterThan(0);
    // first token, then 19 gaps of the mean TPOT, is the whole request
    expect(m.timeToFirstTokenMs + 19 * m.timePerOutputTokenMs).toBeCloseTo(m.e2eMs, 6);
    expect(m.e2eMs).toBeLessThanOrEqual(wallMs);
    // the caller's wall time is the engine's e2e plus only the hand-over of the events
    expect(wallMs - m.e2eMs).toBeLessThan(Math.max(50, 0.25 * wallMs));
    expect([m.preemptions, m.responseCacheHit]).toEqual([0, false]);

    // the engine-wide sums grew by exactly this request's figures
    const after = engine.stats();
    expect(after.finishedRequests - before.finishedRequests).toBe(1);
    expect(after.timeToFirstTokenMsSum - before.timeToFirstTokenMsSum).toBeCloseTo(m.timeToFirstTokenMs, 6);
    expect(after.timePerOutputTokenMsSum - before.timePerOutputTokenMsSum).toBeCloseTo(m.timePerOutputTokenMs, 6);
  });

  it('only the last streamed event carries metrics; concurrent requests each get their own', async () => {
    const prompts = ['Tom had a red ball', 'The sun was hot', 'A little bird sang'];
    const streams = prompts.map(async (prompt, i) => {
      const events: TokenEvent[] = [];
      for await (const ev of engine.generate({ prompt, maxTokens: 8 + 4 * i, ignoreEos: true, sampling: { temperature: 0 } }))
        events.push(ev);
      return events;
    });
    const all = await Promise.all(streams);
    all.forEach((events, i) => {
      expect(events.slice(0, -1).every((e) => e.metrics === undefined)).toBe(true);
      const m = events.at(-1)!.metrics as RequestMetrics;
      expect(m.generatedTokens).toBe(8 + 4 * i);
      expect(m.timeToFirstTokenMs).toBeGreaterThan(0);
      expect(m.timeToFirstTokenMs + (m.generatedTokens - 1) * m.timePerOutputTokenMs).toBeCloseTo(m.e2eMs, 6);
    });
    // batched together: the longer requests ran on after the shorter ones finished
    const e2e = all.map((events) => events.at(-1)!.metrics!.e2eMs);
    expect(e2e[2]).toBeGreaterThan(e2e[0]!);
  });

  it('a response-cache hit is flagged and reports its replay, not the original generation', async () => {
    const request = { prompt: 'Lily found a shell', maxTokens: 16, ignoreEos: true, sampling: { temperature: 0 } };
    const first = await engine.complete(request);
    const hitsBefore = engine.stats().responseCacheHits;
    const again = await engine.complete(request);
    expect(engine.stats().responseCacheHits - hitsBefore).toBe(1);
    expect(again.tokenIds).toEqual(first.tokenIds);
    expect(first.metrics!.responseCacheHit).toBe(false);
    expect(again.metrics!.responseCacheHit).toBe(true);
    expect(again.metrics!.generatedTokens).toBe(16);
    expect(again.metrics!.timeToFirstTokenMs).toBeGreaterThanOrEqual(0);
    expect(again.metrics!.e2eMs).toBeLessThan(first.metrics!.e2eMs);
  });

  it('kvBlocksFree is the blocks no request holds, during a run and after', async () => {
    let during: ReturnType<Engine['stats']> | undefined;
    for await (const ev of engine.generate({
      prompt: 'A frog sat on a log',
      maxTokens: 12,
      ignoreEos: true,
      sampling: { temperature: 0 },
    })) {
      if (ev.index === 5) during = engine.stats();
    }
    expect(during!.kvBlocksUsed).toBeGreaterThan(0);
    expect(during!.kvBlocksFree).toBe(during!.kvBlocksTotal - during!.kvBlocksUsed);
    const idle = engine.stats();
    expect(idle.kvBlocksUsed).toBe(0);
    expect(idle.kvBlocksFree).toBe(idle.kvBlocksTotal);
  });
});
