/**
 * The counter-based random number behind sampling: a pure function of (seed, position),
 * so a request resumed on another worker, or run in a different batch, draws exactly the
 * numbers an uninterrupted run would. shaders/sample.wgsl implements the same function
 * bit for bit (four rounds of Wellons' lowbias32 integer hash over seed_lo, seed_hi and
 * the position); test/kernels/sampling.test.ts checks the two agree.
 */
import { AutoGlmError } from '../errors.js';

const TWO_32 = 4294967296;

/** Low and high 32 bits of a seed (a non-negative safe integer, up to 2^53 - 1). */
export function splitSeed(seed: number): [lo: number, hi: number] {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new AutoGlmError('invalid_request', `seed must be an integer in [0, 2^53), got ${seed}`, { param: 'seed' });
  }
  return [(seed % TWO_32) >>> 0, Math.floor(seed / TWO_32) >>> 0];
}

function lowbias32(x0: number): number {
  let x = x0 >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** 24 random bits for (seed, position), as the shader computes them. */
export function randomBitsFor(seed: number, position: number): number {
  const [lo, hi] = splitSeed(seed);
  let h = lowbias32(lo ^ 0x9e3779b9);
  h = lowbias32(h ^ hi);
  h = lowbias32(h ^ (position >>> 0));
  h = lowbias32((h + 0x632be5ab) >>> 0);
  return h >>> 8;
}

/** Uniform in [0, 1) with 24 bits of resolution: the `u` the sampler draws with. */
export function uniformFor(seed: number, position: number): number {
  return randomBitsFor(seed, position) / 16777216;
}
