/**
 * A seeded random source for load generation: uniform (mulberry32), normal, exponential
 * and gamma draws, so a benchmark's arrival times and prompt lengths replay exactly from
 * its seed.
 */
import { SeededRandom as UniformRandom } from '../testing/seeded-random.js';

export class SeededRandom extends UniformRandom {
  /** Integer uniform in [lo, hi] (both inclusive). */
  intBetween(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** Standard normal (Box-Muller; 1 - u keeps the log argument in (0, 1]). */
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** Exponential with the given mean. */
  exponential(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }

  /**
   * Gamma(shape, scale), Marsaglia and Tsang's method; shape < 1 is boosted to shape + 1
   * and scaled by u^(1/shape), the standard trick.
   */
  gamma(shape: number, scale: number): number {
    if (!(shape > 0) || !(scale > 0)) throw new RangeError(`gamma needs shape > 0 and scale > 0 (got ${shape}, ${scale})`);
    if (shape < 1) return this.gamma(shape + 1, scale) * Math.pow(1 - this.next(), 1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = 1 - this.next();
      if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v * scale;
    }
  }
}
