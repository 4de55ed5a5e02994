/**
 * Request arrival schedules, as vLLM's benchmark_serving draws them: inter-arrival times
 * from a gamma distribution with shape = burstiness and mean 1 / rate. Burstiness 1 is a
 * Poisson process (exponential gaps); below 1 is burstier, above 1 more regular. An
 * infinite rate sends everything at once (then only the concurrency cap paces requests).
 */
import { SeededRandom } from './random.js';

export interface ArrivalOptions {
  /** Requests per second; Infinity sends all requests at time 0. */
  requestRate: number;
  /** Gamma shape factor (vLLM's --burstiness); default 1 (Poisson). */
  burstiness?: number;
  seed?: number;
}

/** Start offsets in ms from the beginning of the run, one per request, non-decreasing. */
export function arrivalOffsetsMs(count: number, options: ArrivalOptions): number[] {
  const { requestRate, burstiness = 1, seed = 0 } = options;
  if (!(requestRate > 0)) throw new RangeError(`request rate must be > 0 (got ${requestRate})`);
  if (!(burstiness > 0)) throw new RangeError(`burstiness must be > 0 (got ${burstiness})`);
  const offsets: number[] = [];
  if (!Number.isFinite(requestRate)) return new Array<number>(count).fill(0);
  const rng = new SeededRandom(seed);
  // mean gap = shape * scale = 1 / rate
  const scaleS = 1 / (requestRate * burstiness);
  let t = 0;
  for (let i = 0; i < count; i++) {
    // The first request goes at once, as in vLLM (it sleeps after yielding each request).
    offsets.push(t * 1000);
    t += rng.gamma(burstiness, scaleS);
  }
  return offsets;
}
