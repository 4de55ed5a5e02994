/**
 * Serving metrics from per-request records, defined as vLLM's benchmark_serving defines
 * them: TPOT of a request = (E2E - TTFT) / (output tokens - 1); ITL = gaps between
 * content chunks, pooled over requests; goodput = requests per second that met every
 * given SLO (TTFT, TPOT, E2E).
 */
import type { RequestRecord } from './openai-stream-client.js';
import { summarize, type Summary } from './stats.js';

export interface ServiceLevelObjectives {
  ttftMs?: number;
  tpotMs?: number;
  e2eMs?: number;
}

export interface ServeMetrics {
  durationS: number;
  completed: number;
  failed: number;
  /** Failure counts by label (e.g. 'http_429:rate_limit_exceeded', 'timeout'). */
  errorsByType: Record<string, number>;
  /** Server-reported where streamed back, else the requested length. */
  totalInputTokens: number;
  totalOutputTokens: number;
  requestThroughput: number;
  /** Requests/s that met all SLOs; null when no SLO was given. */
  goodput: number | null;
  goodRequests: number | null;
  outputTokensPerS: number;
  totalTokensPerS: number;
  ttftMs: Summary;
  tpotMs: Summary;
  itlMs: Summary;
  e2eMs: Summary;
}

/** `requestedInputTokens[i]` stands in for records[i].promptTokens when the server did not report usage. */
export function computeServeMetrics(
  records: readonly RequestRecord[],
  options: { durationS: number; requestedInputTokens: readonly number[]; slo?: ServiceLevelObjectives },
): ServeMetrics {
  const ok = records.map((r, i) => ({ r, i })).filter(({ r }) => r.ok);
  const errorsByType: Record<string, number> = {};
  for (const r of records) if (!r.ok && r.error) errorsByType[r.error.label] = (errorsByType[r.error.label] ?? 0) + 1;
  const tpotOf = (r: RequestRecord) => (r.outputTokens > 1 ? (r.e2eMs - r.ttftMs) / (r.outputTokens - 1) : null);
  const tpots = ok.map(({ r }) => tpotOf(r)).filter((v): v is number => v !== null);
  let totalInput = 0;
  let totalOutput = 0;
  for (const { r, i } of ok) {
    totalInput += r.promptTokens ?? options.requestedInputTokens[i] ?? 0;
    totalOutput += r.outputTokens;
  }
  const slo = options.slo ?? {};
  const hasSlo = slo.ttftMs !== undefined || slo.tpotMs !== undefined || slo.e2eMs !== undefined;
  let good: number | null = null;
  if (hasSlo) {
    good = 0;
    for (const { r } of ok) {
      const tpot = tpotOf(r) ?? 0;
      if (slo.ttftMs !== undefined && !(r.ttftMs <= slo.ttftMs)) continue;
      if (slo.tpotMs !== undefined && !(tpot <= slo.tpotMs)) continue;
      if (slo.e2eMs !== undefined && !(r.e2eMs <= slo.e2eMs)) continue;
      good++;
    }
  }
  const d = options.durationS;
  return {
    durationS: d,
    completed: ok.length,
    failed: records.length - ok.length,
    errorsByType,
    totalInputTokens: totalInput,
    totalOutputTokens: totalOutput,
    requestThroughput: ok.length / d,
    goodput: good === null ? null : good / d,
    goodRequests: good,
    outputTokensPerS: totalOutput / d,
    totalTokensPerS: (totalInput + totalOutput) / d,
    ttftMs: summarize(ok.map(({ r }) => r.ttftMs)),
    tpotMs: summarize(tpots),
    itlMs: summarize(ok.flatMap(({ r }) => r.itlMs)),
    e2eMs: summarize(ok.map(({ r }) => r.e2eMs)),
  };
}
