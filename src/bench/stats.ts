/**
 * Summary statistics for benchmark samples. Percentiles interpolate linearly between
 * order statistics (numpy's default), so our p90/p99 match vLLM's serving benchmark on
 * the same samples.
 */

export interface Summary {
  count: number;
  mean: number;
  median: number;
  std: number;
  min: number;
  max: number;
  p90: number;
  p99: number;
}

/** The q-th percentile (0..100) of values, numpy 'linear' method; NaN for no values. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return percentileOfSorted(sorted, q);
}

function percentileOfSorted(sorted: readonly number[], q: number): number {
  const rank = (Math.min(Math.max(q, 0), 100) / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** Mean, median, population standard deviation, extremes, p90 and p99 (NaN fields when empty). */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const m = mean(sorted);
  let sq = 0;
  for (const v of sorted) sq += (v - m) * (v - m);
  return {
    count: sorted.length,
    mean: m,
    median: percentileOfSorted(sorted, 50),
    std: sorted.length === 0 ? Number.NaN : Math.sqrt(sq / sorted.length),
    min: sorted.length === 0 ? Number.NaN : sorted[0]!,
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
    p90: percentileOfSorted(sorted, 90),
    p99: percentileOfSorted(sorted, 99),
  };
}

/** Median with the spread that noisy machines need beside it: (max - min) / median. */
export function medianAndSpread(values: readonly number[]): { median: number; spread: number } {
  const s = summarize(values);
  return { median: s.median, spread: s.median === 0 ? 0 : (s.max - s.min) / s.median };
}
