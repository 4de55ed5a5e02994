/**
 * Token-length distributions for synthetic requests, parsed from short CLI strings:
 * `128` (fixed), `64-256` (uniform, inclusive), `normal:128:32` (clamped to >= 1),
 * or vLLM's style `128~0.25` (uniform within +-25% of 128).
 */
import { AutoGlmError } from '../errors.js';
import type { SeededRandom } from './random.js';

export type LengthDistribution =
  { kind: 'fixed'; tokens: number } | { kind: 'uniform'; min: number; max: number } | { kind: 'normal'; mean: number; std: number };

export function parseLengthDistribution(text: string, param = 'length'): LengthDistribution {
  const bad = () => new AutoGlmError('invalid_request', `bad ${param} '${text}': use 128, 64-256, 128~0.25 or normal:128:32`, { param });
  const int = (s: string | undefined) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw bad();
    return n;
  };
  const t = text.trim();
  if (t.startsWith('normal:')) {
    const [, m, s] = t.split(':');
    const std = Number(s);
    if (!(std >= 0)) throw bad();
    return { kind: 'normal', mean: int(m), std };
  }
  if (t.includes('~')) {
    const [center, ratio] = t.split('~');
    const c = int(center);
    const r = Number(ratio);
    if (!(r >= 0 && r < 1)) throw bad();
    return { kind: 'uniform', min: Math.max(1, Math.floor(c * (1 - r))), max: Math.ceil(c * (1 + r)) };
  }
  if (t.includes('-')) {
    const [lo, hi] = t.split('-');
    const min = int(lo);
    const max = int(hi);
    if (max < min) throw bad();
    return { kind: 'uniform', min, max };
  }
  return { kind: 'fixed', tokens: int(t) };
}

export function sampleLength(dist: LengthDistribution, rng: SeededRandom): number {
  switch (dist.kind) {
    case 'fixed':
      return dist.tokens;
    case 'uniform':
      return rng.intBetween(dist.min, dist.max);
    case 'normal':
      return Math.max(1, Math.round(dist.mean + dist.std * rng.normal()));
  }
}

export function describeLength(dist: LengthDistribution): string {
  switch (dist.kind) {
    case 'fixed':
      return `${dist.tokens}`;
    case 'uniform':
      return `uniform ${dist.min}-${dist.max}`;
    case 'normal':
      return `normal(${dist.mean}, ${dist.std})`;
  }
}
