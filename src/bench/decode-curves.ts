/**
 * Measured decode curves on the real engine: time per output token and decode throughput
 * against batch size, at several context lengths. A point runs `batch` greedy requests
 * at once, each with a distinct random prompt of `contextTokens` ids (no shared prefix, so
 * the prefix cache cannot help), and times only the window in which every sequence is
 * decoding: from the last first-token to the first last-token. Tokens inside that window
 * over its length is the steady decode rate at that batch; prefill is excluded.
 */
import { AutoGlmError } from '../errors.js';
import type { InferenceEngine, TokenEvent } from '../engine/types.js';
import { SeededRandom } from './random.js';
import { medianAndSpread } from './stats.js';

export interface DecodeCurveOptions {
  batchSizes: number[];
  contextLengths: number[];
  /** Tokens generated per request; the timed window is a little shorter. Default 24. */
  decodeTokens?: number;
  /** Repeats per point (median reported). Default 3. */
  repeats?: number;
  vocabSize: number;
  seed?: number;
  /** Called once per finished repeat. */
  onProgress?: (done: number, total: number, note: string) => void;
}

export interface DecodePoint {
  batch: number;
  contextTokens: number;
  /** Median over repeats of the steady-window time per output token, per sequence, ms. */
  tpotMs: number;
  /** (max - min) / median over repeats. */
  tpotSpread: number;
  /** Output tokens/s of the whole batch in the steady window (median). */
  decodeTokensPerS: number;
  /** Time to first token of the slowest request (includes every prefill of the batch), ms. */
  prefillMs: number;
  repeats: number;
  /** Engine preemptions during the point: non-zero means the KV cache was too small for it. */
  preemptions: number;
}

interface Trace {
  first: number;
  last: number;
  times: number[];
}

async function runOne(engine: InferenceEngine, prompt: number[], maxTokens: number, start: number): Promise<Trace> {
  const times: number[] = [];
  for await (const ev of engine.generate({
    prompt,
    maxTokens,
    ignoreEos: true,
    sampling: { temperature: 0 },
  }) as AsyncIterable<TokenEvent>) {
    void ev;
    times.push(performance.now() - start);
  }
  return { first: times[0]!, last: times[times.length - 1]!, times };
}

/** One measurement: `batch` requests together; returns the steady-window numbers. */
async function measurePoint(
  engine: InferenceEngine,
  batch: number,
  contextTokens: number,
  decodeTokens: number,
  rng: SeededRandom,
  vocabSize: number,
): Promise<{ tpotMs: number; tokensPerS: number; prefillMs: number }> {
  const prompts = Array.from({ length: batch }, () => Array.from({ length: contextTokens }, () => rng.intBetween(0, vocabSize - 1)));
  const start = performance.now();
  const traces = await Promise.all(prompts.map((p) => runOne(engine, p, decodeTokens, start)));
  const windowStart = Math.max(...traces.map((t) => t.first));
  const windowEnd = Math.min(...traces.map((t) => t.last));
  let tokens = 0;
  for (const t of traces) tokens += t.times.filter((x) => x > windowStart && x <= windowEnd).length;
  const windowMs = windowEnd - windowStart;
  if (!(windowMs > 0) || tokens === 0) {
    throw new AutoGlmError('internal_error', `decode window empty at batch ${batch}, context ${contextTokens}: raise --decode-tokens`);
  }
  return { tpotMs: (windowMs * batch) / tokens, tokensPerS: tokens / (windowMs / 1000), prefillMs: windowStart };
}

export async function measureDecodeCurves(engine: InferenceEngine, options: DecodeCurveOptions): Promise<DecodePoint[]> {
  const decodeTokens = options.decodeTokens ?? 24;
  const repeats = options.repeats ?? 3;
  if (decodeTokens < 4)
    throw new AutoGlmError('invalid_request', 'decode tokens must be >= 4 to leave a steady window', { param: 'decode-tokens' });
  const rng = new SeededRandom(options.seed ?? 1);
  const points: DecodePoint[] = [];
  const total = options.contextLengths.length * options.batchSizes.length * repeats;
  let done = 0;
  // Check every point before spending time on any.
  for (const contextTokens of options.contextLengths) {
    if (contextTokens + decodeTokens > engine.contextLength) {
      throw new AutoGlmError(
        'context_length_exceeded',
        `context ${contextTokens} + ${decodeTokens} decode tokens exceeds the model's ${engine.contextLength}`,
        { param: 'contexts' },
      );
    }
  }
  // Warm-up: compile every pipeline a step needs before anything is timed.
  await measurePoint(engine, Math.min(2, Math.max(...options.batchSizes)), Math.min(...options.contextLengths), 4, rng, options.vocabSize);
  for (const contextTokens of options.contextLengths) {
    for (const batch of options.batchSizes) {
      const preemptionsBefore = engine.stats().preemptions;
      const tpots: number[] = [];
      const rates: number[] = [];
      const prefills: number[] = [];
      for (let r = 0; r < repeats; r++) {
        const m = await measurePoint(engine, batch, contextTokens, decodeTokens, rng, options.vocabSize);
        tpots.push(m.tpotMs);
        rates.push(m.tokensPerS);
        prefills.push(m.prefillMs);
        options.onProgress?.(++done, total, `batch ${batch} ctx ${contextTokens}: ${m.tpotMs.toFixed(1)} ms/token`);
      }
      const t = medianAndSpread(tpots);
      points.push({
        batch,
        contextTokens,
        tpotMs: t.median,
        tpotSpread: t.spread,
        decodeTokensPerS: medianAndSpread(rates).median,
        prefillMs: medianAndSpread(prefills).median,
        repeats,
        preemptions: engine.stats().preemptions - preemptionsBefore,
      });
    }
  }
  return points;
}

/** Largest measured batch whose median TPOT meets the target, per context length (null: none does). */
export function largestBatchWithin(
  points: readonly DecodePoint[],
  tpotTargetMs: number,
): { contextTokens: number; batch: number | null; tpotMs: number | null }[] {
  const contexts = [...new Set(points.map((p) => p.contextTokens))];
  return contexts.map((contextTokens) => {
    const ok = points.filter((p) => p.contextTokens === contextTokens && p.tpotMs <= tpotTargetMs && p.preemptions === 0);
    const best = ok.reduce<DecodePoint | null>((a, p) => (a === null || p.batch > a.batch ? p : a), null);
    return { contextTokens, batch: best?.batch ?? null, tpotMs: best?.tpotMs ?? null };
  });
}
