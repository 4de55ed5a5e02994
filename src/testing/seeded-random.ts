/**
 * Seeded randomness (mulberry32) shared by the model generator, the benchmarks and the
 * tests: fast (one tensor of 25M values in ~0.1 s) and portable.
 */

/** mulberry32 over a 32-bit state. */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** `count` values uniform in [center - halfWidth, center + halfWidth). */
  fillUniform(out: Float32Array, center: number, halfWidth: number): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = center + halfWidth * (2 * this.next() - 1);
    return out;
  }
}

/** A per-name seed (FNV-1a of the name mixed with the model seed), so tensors do not depend on write order. */
export function seedFor(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  return (h ^ (h >>> 13)) >>> 0;
}
