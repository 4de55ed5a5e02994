import { describe, expect, it } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { addLogitBias, prepareLogitBias, type RowLogitBias } from '../../src/kernels/logit-bias.js';
import { GREEDY_SAMPLING_ROW, createSampleOutput, prepareSampling, readSamples, sample } from '../../src/kernels/sampling.js';
import { Rng } from '../helpers/random.js';
import { relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { argmaxRef, logitBiasRef, logSoftmax } from '../reference/sampling.js';

const runtime = useRuntime();

/** Up to `max` distinct tokens of the row with biases in [-100, 100]. */
function randomBiases(rng: Rng, vocab: number, max: number): RowLogitBias {
  const n = rng.int(Math.min(vocab, max) + 1);
  return rng
    .permutation(vocab)
    .slice(0, n)
    .map((t) => [t, rng.uniform(-100, 100)] as const);
}

describe('logit bias', () => {
  for (const vocab of [1, 7, 33, 129, 4097]) {
    for (const rows of [1, 3]) {
      it(`vocab ${vocab}, ${rows} rows`, async () => {
        const rt = runtime();
        const rng = new Rng(vocab * 7 + rows);
        const logits = rng.floats(rows * vocab, -5, 5);
        // the middle row of three has none: rows without biases are left alone
        const perRow = Array.from({ length: rows }, (_, r) => (rows === 3 && r === 1 ? undefined : randomBiases(rng, vocab, 40)));
        const t = rt.upload('f32', logits);
        const batch = prepareLogitBias(rt, perRow, vocab);
        const rec = rt.recorder();
        if (batch) addLogitBias(rt, rec, t, vocab, batch);
        await rec.submit();
        const got = await rt.readFloats(t);
        const ref = logitBiasRef(logits, vocab, perRow);
        expect(relativeError(got, ref)).toBeLessThanOrEqual(TOLERANCE.f32);
        // untouched logits are bit-for-bit what they were
        const biased = new Set(perRow.flatMap((row, r) => (row ?? []).map(([tok]) => r * vocab + tok)));
        for (let i = 0; i < logits.length; i++) if (!biased.has(i)) expect(got[i]).toBe(logits[i]);
      });
    }
  }

  it('steers the sampler: +100 forces a token, -100 bans the argmax, logprobs see the biased logits', async () => {
    const rt = runtime();
    const vocab = 1000;
    const rng = new Rng(5);
    const logits = rng.floats(2 * vocab, -3, 3);
    const best = argmaxRef(logits.subarray(vocab));
    const perRow: RowLogitBias[] = [[[17, 100]], [[best, -100]]];
    const t = rt.upload('f32', logits);
    const bias = prepareLogitBias(rt, perRow, vocab)!;
    const batch = prepareSampling(rt, [
      { ...GREEDY_SAMPLING_ROW, logprobs: true },
      { ...GREEDY_SAMPLING_ROW, logprobs: true },
    ]);
    const out = createSampleOutput(rt, 2);
    const rec = rt.recorder();
    addLogitBias(rt, rec, t, vocab, bias);
    sample(rt, rec, { logits: t, vocab, batch, out });
    await rec.submit();
    const got = await readSamples(rt, out, batch);
    const ref = logitBiasRef(logits, vocab, perRow);
    expect(got.tokenIds[0]).toBe(17);
    expect(got.tokenIds[1]).toBe(argmaxRef(ref.subarray(vocab)));
    expect(got.tokenIds[1]).not.toBe(best);
    expect(got.logprobs![0]).toBeCloseTo(logSoftmax(ref.subarray(0, vocab))[17]!, 4);
  });

  it('reuses its buffer, and records nothing for a step without biases', () => {
    const rt = runtime();
    const first = prepareLogitBias(rt, [[[1, 2]]], 10)!;
    const second = prepareLogitBias(rt, [[[3, -1]], [[4, 1]]], 10, first)!;
    expect(second.buffer).toBe(first.buffer);
    expect(second.count).toBe(2);
    expect(prepareLogitBias(rt, [undefined, []], 10, second)).toBeNull();
  });

  it.each([
    ['a token past the vocabulary', [[[10, 1]]], /outside the vocabulary of 10/],
    ['a negative token', [[[-1, 1]]], /outside the vocabulary/],
    [
      'a token twice',
      [
        [
          [3, 1],
          [3, 2],
        ],
      ],
      /token 3 has two biases/,
    ],
    ['a non-finite bias', [[[3, Infinity]]], /must be finite/],
  ] as const)('refuses %s with a typed error', (_name, perRow, message) => {
    const rt = runtime();
    let err: unknown;
    try {
      prepareLogitBias(rt, perRow as unknown as RowLogitBias[], 10);
    } catch (e) {
      err = e;
    }
    expect(isAutoGlmError(err) && err.code === 'invalid_request' && err.param === 'logit_bias').toBe(true);
    expect((err as Error).message).toMatch(message);
  });
});
