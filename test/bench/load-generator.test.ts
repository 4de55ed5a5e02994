import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrivalOffsetsMs } from '../../src/bench/arrivals.js';
import { parseLengthDistribution } from '../../src/bench/lengths.js';
import { planRequests, runLoad } from '../../src/bench/load-generator.js';
import { SeededRandom } from '../../src/bench/random.js';
import { computeServeMetrics } from '../../src/bench/serve-metrics.js';
import type { RequestRecord } from '../../src/bench/openai-stream-client.js';
import { mean, percentile, summarize } from '../../src/bench/stats.js';
import { startFakeServer, type FakeServer } from './helpers/fake-openai-server.js';

describe('stats', () => {
  it('percentiles interpolate linearly between order statistics (numpy default)', () => {
    const v = [15, 20, 35, 40, 50];
    expect(percentile(v, 0)).toBe(15);
    expect(percentile(v, 50)).toBe(35);
    expect(percentile(v, 40)).toBeCloseTo(29, 12); // rank 1.6: 20 + 0.6 * 15
    expect(percentile(v, 90)).toBeCloseTo(46, 12); // rank 3.6: 40 + 0.6 * 10
    expect(percentile(v, 99)).toBeCloseTo(49.6, 12);
    expect(percentile([7], 99)).toBe(7);
    expect(Number.isNaN(percentile([], 50))).toBe(true);
  });

  it('summarize gives mean, median, population std and extremes, order independent', () => {
    const s = summarize([4, 1, 3, 2]);
    expect(s).toMatchObject({ count: 4, mean: 2.5, median: 2.5, min: 1, max: 4 });
    expect(s.std).toBeCloseTo(Math.sqrt(1.25), 12);
    expect(s.p90).toBeCloseTo(3.7, 12);
  });
});

describe('arrivals', () => {
  it('are a fixed function of the seed', () => {
    const a = arrivalOffsetsMs(50, { requestRate: 10, seed: 7 });
    expect(arrivalOffsetsMs(50, { requestRate: 10, seed: 7 })).toEqual(a);
    expect(arrivalOffsetsMs(50, { requestRate: 10, seed: 8 })).not.toEqual(a);
    expect(a[0]).toBe(0);
    for (let i = 1; i < a.length; i++) expect(a[i]!).toBeGreaterThanOrEqual(a[i - 1]!);
  });

  it.each([
    [1, 1], // Poisson: exponential gaps, coefficient of variation 1
    [0.25, 2], // bursty: CV = 1/sqrt(burstiness)
    [4, 0.5], // regular
  ])('burstiness %f: gap mean 1/rate, coefficient of variation %f', (burstiness, cv) => {
    const rate = 20;
    const n = 40_000;
    const t = arrivalOffsetsMs(n + 1, { requestRate: rate, burstiness, seed: 3 });
    const gaps = t.slice(1).map((v, i) => v - t[i]!);
    const m = mean(gaps);
    const std = summarize(gaps).std;
    expect(m).toBeGreaterThan((1000 / rate) * 0.97);
    expect(m).toBeLessThan((1000 / rate) * 1.03);
    expect(std / m).toBeGreaterThan(cv * 0.95);
    expect(std / m).toBeLessThan(cv * 1.05);
  });

  it('Poisson: counts per second have variance equal to their mean', () => {
    const rate = 5;
    const t = arrivalOffsetsMs(50_000, { requestRate: rate, seed: 11 });
    const seconds = Math.floor(t[t.length - 1]! / 1000);
    const counts = new Array<number>(seconds).fill(0);
    for (const v of t) if (v < seconds * 1000) counts[Math.floor(v / 1000)]!++;
    const s = summarize(counts);
    expect(s.mean).toBeCloseTo(rate, 0);
    expect(s.std * s.std).toBeGreaterThan(rate * 0.9);
    expect(s.std * s.std).toBeLessThan(rate * 1.1);
  });

  it('infinite rate releases every request at time 0; bad rates are rejected', () => {
    expect(arrivalOffsetsMs(3, { requestRate: Infinity })).toEqual([0, 0, 0]);
    expect(() => arrivalOffsetsMs(3, { requestRate: 0 })).toThrow(RangeError);
    expect(() => arrivalOffsetsMs(3, { requestRate: 1, burstiness: -1 })).toThrow(RangeError);
  });

  it('gamma draws have mean shape*scale and variance shape*scale^2', () => {
    const rng = new SeededRandom(5);
    const xs = Array.from({ length: 40_000 }, () => rng.gamma(3, 2));
    const s = summarize(xs);
    expect(s.mean).toBeGreaterThan(6 * 0.98);
    expect(s.mean).toBeLessThan(6 * 1.02);
    expect(s.std * s.std).toBeGreaterThan(12 * 0.94);
    expect(s.std * s.std).toBeLessThan(12 * 1.06);
  });
});

describe('length distributions', () => {
  it('parse fixed, ranges, +-ratio and normal; reject nonsense with a typed error', () => {
    expect(parseLengthDistribution('128')).toEqual({ kind: 'fixed', tokens: 128 });
    expect(parseLengthDistribution('64-256')).toEqual({ kind: 'uniform', min: 64, max: 256 });
    expect(parseLengthDistribution('100~0.25')).toEqual({ kind: 'uniform', min: 75, max: 125 });
    expect(parseLengthDistribution('normal:128:32')).toEqual({ kind: 'normal', mean: 128, std: 32 });
    for (const bad of ['0', 'x', '9-3', '10~2', '-5']) expect(() => parseLengthDistribution(bad)).toThrow(/bad length/);
  });

  it('a plan draws lengths inside their range, reproducibly from the seed', () => {
    const options = {
      baseUrl: 'http://unused',
      numRequests: 200,
      inputLength: parseLengthDistribution('10-20'),
      outputLength: parseLengthDistribution('5'),
      seed: 9,
    };
    const plan = planRequests(options);
    expect(planRequests(options)).toEqual(plan);
    const lens = plan.map((p) => p.inputTokens);
    expect(Math.min(...lens)).toBe(10);
    expect(Math.max(...lens)).toBe(20);
    for (const p of plan) expect((p.prompt as string).trim().split(' ')).toHaveLength(p.inputTokens);
    const ids = planRequests({ ...options, promptMode: 'token-ids', vocabSize: 300 });
    for (const p of ids) {
      expect(p.prompt).toHaveLength(p.inputTokens);
      for (const id of p.prompt as number[]) expect(id >= 16 && id < 300).toBe(true);
    }
  });
});

describe('serve metrics', () => {
  const rec = (ttftMs: number, e2eMs: number, outputTokens: number, itlMs: number[] = []): RequestRecord => ({
    ok: true,
    sentAtMs: 0,
    ttftMs,
    e2eMs,
    itlMs,
    outputTokens,
    promptTokens: 10,
    outputChars: 0,
  });

  it('TPOT = (E2E - TTFT) / (n - 1), goodput counts requests meeting every SLO', () => {
    const records = [
      rec(100, 1000, 10), // tpot 100
      rec(50, 500, 10), // tpot 50
      rec(300, 750, 10), // tpot 50, ttft too slow
      rec(20, 20, 1), // no tpot
      { ...rec(0, 5, 0), ok: false, error: { kind: 'http' as const, label: 'http_429:rate_limit_exceeded', message: '' } },
    ];
    const m = computeServeMetrics(records, { durationS: 2, requestedInputTokens: [10, 10, 10, 10, 10], slo: { ttftMs: 200, tpotMs: 60 } });
    expect(m.completed).toBe(4);
    expect(m.failed).toBe(1);
    expect(m.errorsByType).toEqual({ 'http_429:rate_limit_exceeded': 1 });
    expect(m.tpotMs.count).toBe(3);
    expect(m.tpotMs.mean).toBeCloseTo(200 / 3, 10);
    expect(m.goodRequests).toBe(2); // the 50-ms-TPOT one and the single-token one
    expect(m.goodput).toBe(1);
    expect(m.requestThroughput).toBe(2);
    expect(m.outputTokensPerS).toBe(31 / 2);
    expect(m.totalInputTokens).toBe(40);
    expect(computeServeMetrics(records, { durationS: 2, requestedInputTokens: [] }).goodput).toBeNull();
  });
});

describe('runLoad against a real loopback SSE server', () => {
  let server: FakeServer;
  beforeAll(async () => {
    server = await startFakeServer({ ttftMs: 40, itlMs: 10, slowTtftMs: 400 });
  });
  afterAll(async () => server.close());

  it('closed loop at a concurrency cap: TTFT, TPOT, ITL and token counts match the server', async () => {
    server.peakInFlight = 0;
    const result = await runLoad({
      baseUrl: server.url,
      numRequests: 12,
      maxConcurrency: 3,
      inputLength: parseLengthDistribution('8'),
      outputLength: parseLengthDistribution('6'),
      keepRecords: true,
      warmupRequests: 1,
    });
    const m = result.metrics;
    expect(result.config.model).toBe('fake-model');
    expect(m.completed).toBe(12);
    expect(m.failed).toBe(0);
    expect(server.peakInFlight).toBe(3);
    expect(result.peakConcurrency).toBe(3);
    expect(m.totalOutputTokens).toBe(72);
    expect(m.totalInputTokens).toBe(96); // server-reported usage
    expect(m.ttftMs.median).toBeGreaterThanOrEqual(39);
    expect(m.ttftMs.median).toBeLessThan(40 + 60);
    expect(m.tpotMs.median).toBeGreaterThanOrEqual(9);
    expect(m.tpotMs.median).toBeLessThan(10 + 15);
    expect(m.itlMs.count).toBe(12 * 5);
    // 4 waves of ~(40 + 5 * 10) ms
    expect(m.durationS).toBeGreaterThan(0.3);
    const sent = server.received.slice(-13);
    expect(sent.every((r) => r.maxTokens === 6 && r.ignoreEos)).toBe(true);
    // the warm-up went first, untimed, with a prompt no timed request repeats (no cache can answer one)
    expect(new Set(sent.map((r) => r.prompt)).size).toBe(13);
    expect(result.records!.every((r) => r.sentAtMs >= 0)).toBe(true);
  });

  it('Poisson arrivals: requests are sent on the seeded schedule', async () => {
    const options = {
      baseUrl: server.url,
      model: 'fake-model',
      numRequests: 10,
      requestRate: 20,
      seed: 42,
      inputLength: parseLengthDistribution('4'),
      outputLength: parseLengthDistribution('2'),
      keepRecords: true,
    };
    const plan = planRequests(options);
    const result = await runLoad(options);
    const sent = result.records!.map((r) => r.sentAtMs);
    for (let i = 0; i < plan.length; i++) {
      // timers may fire a fraction of a millisecond early
      expect(sent[i]!).toBeGreaterThanOrEqual(plan[i]!.offsetMs - 2);
      expect(sent[i]!).toBeLessThan(plan[i]!.offsetMs + 50);
    }
    expect(result.config.requestRate).toBe(20);
  });

  it('goodput under a TTFT target and errors counted by type', async () => {
    // A chat endpoint whose prompts hit markers: fake the markers through extra requests.
    const base = await runLoad({
      baseUrl: server.url,
      endpoint: '/v1/chat/completions',
      numRequests: 4,
      maxConcurrency: 4,
      inputLength: parseLengthDistribution('3'),
      outputLength: parseLengthDistribution('3'),
      slo: { ttftMs: 200 },
    });
    expect(base.metrics.completed).toBe(4);
    expect(base.metrics.goodRequests).toBe(4);

    const { sendStreamingRequest } = await import('../../src/bench/openai-stream-client.js');
    const common = {
      baseUrl: server.url,
      endpoint: '/v1/completions' as const,
      model: 'm',
      maxTokens: 3,
      ignoreEos: true,
      temperature: 0,
      timeoutMs: 5000,
    };
    const closed = await startFakeServer({ ttftMs: 1, itlMs: 1 });
    await closed.close(); // a loopback port nobody listens on now
    const start = performance.now();
    const records = await Promise.all([
      sendStreamingRequest({ ...common, prompt: 'fast one' }, start),
      sendStreamingRequest({ ...common, prompt: 'SLOW one' }, start),
      sendStreamingRequest({ ...common, prompt: 'REJECT me' }, start),
      sendStreamingRequest({ ...common, prompt: 'late', timeoutMs: 20 }, start),
      sendStreamingRequest({ ...common, prompt: 'x', baseUrl: closed.url }, start),
    ]);
    const m = computeServeMetrics(records, { durationS: 1, requestedInputTokens: [2, 2, 2, 1, 1], slo: { ttftMs: 200 } });
    expect(m.completed).toBe(2);
    expect(m.goodRequests).toBe(1);
    expect(records[1]!.ttftMs).toBeGreaterThanOrEqual(399);
    expect(m.errorsByType).toEqual({ 'http_429:rate_limit_exceeded': 1, timeout: 1, 'network:ECONNREFUSED': 1 });
  });
});
