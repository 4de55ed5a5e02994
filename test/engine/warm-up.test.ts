import { describe, expect, it } from 'vitest';
import { GEMV_MAX_ROWS } from '../../src/kernels/matmul.js';
import { warmUpWaves } from '../../src/engine/warm-up.js';

describe('warmUpWaves', () => {
  it('every request fits the context and the vocabulary, for any context length', () => {
    for (let ctx = 1; ctx <= 100; ctx++) {
      for (const r of warmUpWaves(50, ctx, 16).flat()) {
        const prompt = r.prompt as number[];
        expect(prompt.length + r.maxTokens!).toBeLessThanOrEqual(ctx);
        expect(Math.max(...prompt)).toBeLessThan(50);
      }
    }
    expect(warmUpWaves(50, 4, 16)).toEqual([]);
  });

  it('runs one wave per decode batch width up to one past the GEMV limit, capped at the batch width', () => {
    expect(warmUpWaves(1000, 2048, 64).map((w) => w.length)).toEqual(Array.from({ length: GEMV_MAX_ROWS + 1 }, (_, i) => i + 1));
    expect(warmUpWaves(1000, 2048, 3).map((w) => w.length)).toEqual([1, 2, 3]);
    // a profile whose GEMV takes more rows warms those widths too
    expect(warmUpWaves(1000, 2048, 64, 12).map((w) => w.length)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    const ids = warmUpWaves(1000, 2048, 64)
      .flat()
      .map((r) => r.requestId);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
