/**
 * Helpers shared by the engine benchmarks: the generated ~100M model and timed streams.
 */
import { Engine } from '../src/engine/engine.js';
import type { EngineOptions, GenerateRequest } from '../src/engine/types.js';
import { ensureGeneratedModel } from '../src/testing/generate-model.js';

export async function loadBenchEngine(
  options: EngineOptions = {},
): Promise<{ engine: Engine; dir: string; loadMs: number; generateMs: number }> {
  const g0 = performance.now();
  const dir = await ensureGeneratedModel('100m', { architecture: 'llama', seed: 1 });
  const t0 = performance.now();
  const engine = await Engine.load(dir, { responseCacheEntries: 0, ...options });
  return { engine, dir, loadMs: performance.now() - t0, generateMs: t0 - g0 };
}

export interface TimedGeneration {
  ttftMs: number;
  totalMs: number;
  tokens: number;
  /** Mean time per output token after the first. */
  tpotMs: number;
}

/** Streams one request and times its first and last token. */
export async function timedGenerate(engine: Engine, request: GenerateRequest): Promise<TimedGeneration> {
  const start = performance.now();
  let first = 0;
  let tokens = 0;
  for await (const _ of engine.generate(request)) {
    if (tokens++ === 0) first = performance.now();
  }
  const end = performance.now();
  return { ttftMs: first - start, totalMs: end - start, tokens, tpotMs: tokens > 1 ? (end - first) / (tokens - 1) : 0 };
}

/** Random token ids (distinct per call, so the prefix cache cannot serve them). */
export function randomPrompt(length: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 1 + (s % (vocab - 1));
  });
}

export function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

/** The commit and date a result was measured at, for bench/RESULTS.md. */
