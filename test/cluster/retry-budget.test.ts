import { describe, expect, test } from 'vitest';
import { RetryBudget } from '../../src/cluster/gateway/retry-budget.js';

// A clock the test moves by hand, so refills are exact.
function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** Retries granted in a row until the budget says no. */
function drain(b: RetryBudget): number {
  let n = 0;
  while (b.tryRetry()) if (++n > 10_000) throw new Error('the budget never runs out');
  return n;
}

describe('RetryBudget', () => {
  test('starts full at its cap, then refuses once spent: no endless retries', () => {
    const c = clock();
    const b = new RetryBudget({ ratio: 0.2, minPerSecond: 5, cap: 10 }, c.now);
    expect(drain(b)).toBe(10);
    expect(b.tryRetry()).toBe(false);
    expect(b.tryRetry()).toBe(false);
  });

  test('each request deposits `ratio` of a retry', () => {
    const c = clock();
    const b = new RetryBudget({ ratio: 0.25, minPerSecond: 0, cap: 10 }, c.now);
    drain(b);
    for (let i = 0; i < 3; i++) b.onRequest();
    expect(b.tryRetry()).toBe(false); // 0.75 of a retry
    b.onRequest();
    expect(b.tryRetry()).toBe(true); // 1.0
    expect(b.tryRetry()).toBe(false);
    for (let i = 0; i < 8; i++) b.onRequest();
    expect(drain(b)).toBe(2);
  });

  test('the floor accrues `minPerSecond` with time, capped so a quiet spell banks no storm', () => {
    const c = clock();
    const b = new RetryBudget({ ratio: 0, minPerSecond: 5, cap: 8 }, c.now);
    drain(b);
    c.advance(199); // 0.995 retries
    expect(b.tryRetry()).toBe(false);
    c.advance(1);
    expect(b.tryRetry()).toBe(true);
    c.advance(1000);
    expect(drain(b)).toBe(5);
    c.advance(3_600_000);
    expect(drain(b)).toBe(8);
  });

  test('with no ratio and no floor, a spent budget stays spent', () => {
    const c = clock();
    const b = new RetryBudget({ ratio: 0, minPerSecond: 0, cap: 3 }, c.now);
    expect(drain(b)).toBe(3);
    c.advance(60_000);
    b.onRequest();
    expect(b.tryRetry()).toBe(false);
  });

  test('defaults: 50 banked, 0.2 per request, 5 per second', () => {
    const c = clock();
    const b = new RetryBudget({}, c.now);
    expect(drain(b)).toBe(50);
    for (let i = 0; i < 10; i++) b.onRequest();
    expect(drain(b)).toBe(2);
    c.advance(1000);
    expect(drain(b)).toBe(5);
  });
});
