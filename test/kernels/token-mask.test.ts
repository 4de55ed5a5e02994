import { describe, expect, it } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import {
  GREEDY_SAMPLING_ROW,
  createSampleOutput,
  prepareSampling,
  readSamples,
  sample,
  type SampleResult,
  type SamplingRow,
} from '../../src/kernels/sampling.js';
import { applyTokenMasks, prepareTokenMasks, tokenMaskWords } from '../../src/kernels/token-mask.js';
import { useRuntime } from '../helpers/gpu.js';
import { Rng } from '../helpers/random.js';
import { argmaxRef, logSoftmax, topNRef } from '../reference/sampling.js';
import { maskOf, tokenMaskRef } from '../reference/token-mask.js';

const runtime = useRuntime();

/** The sampler counts a logit at or below this as masked (shaders/sample.wgsl's BIG). */
const SAMPLER_MASKED = -3e38;

/** A random mask allowing about `density` of the tokens, never none. */
function randomMask(rng: Rng, vocab: number, density: number): Uint32Array {
  const allowed = Array.from({ length: vocab }, (_, t) => t).filter(() => rng.next() < density);
  return maskOf(vocab, allowed.length > 0 ? allowed : [rng.int(vocab)]);
}

const allows = (mask: Uint32Array, t: number): boolean => ((mask[t >>> 5]! >>> (t & 31)) & 1) === 1;

/** Masks (when given) then samples, in one command buffer, as the model runner records them. */
async function maskAndSample(
  rt: KernelRuntime,
  logits: Float32Array,
  vocab: number,
  rows: SamplingRow[],
  masks: (Uint32Array | undefined)[] | null,
): Promise<SampleResult> {
  const t = rt.upload('f32', logits);
  const batch = prepareSampling(rt, rows);
  const out = createSampleOutput(rt, rows.length);
  const rec = rt.recorder();
  const masked = masks && prepareTokenMasks(rt, masks, vocab);
  if (masked) applyTokenMasks(rt, rec, t, vocab, masked);
  sample(rt, rec, { logits: t, vocab, batch, out });
  await rec.submit();
  return readSamples(rt, out, batch);
}

describe('token mask', () => {
  for (const vocab of [1, 7, 33, 129, 4097]) {
    for (const rows of [1, 3]) {
      it(`vocab ${vocab}, ${rows} rows`, async () => {
        const rt = runtime();
        const rng = new Rng(vocab * 13 + rows);
        const logits = rng.floats(rows * vocab, -5, 5);
        // the middle row of three has none: rows without a mask are left alone
        const perRow = Array.from({ length: rows }, (_, r) => (rows === 3 && r === 1 ? undefined : randomMask(rng, vocab, 0.4)));
        // token 0 of the first row is always masked, so that every size masks something (vocab 1 included)
        perRow[0]![0]! &= ~1;
        const t = rt.upload('f32', logits);
        const batch = prepareTokenMasks(rt, perRow, vocab)!;
        const rec = rt.recorder();
        applyTokenMasks(rt, rec, t, vocab, batch);
        await rec.submit();
        const got = await rt.readFloats(t);
        const ref = tokenMaskRef(logits, vocab, perRow);
        for (let i = 0; i < logits.length; i++) {
          // allowed logits bit for bit; masked ones finite and at or below the sampler's mask level
          if (ref[i] === -Infinity) {
            expect(Number.isFinite(got[i])).toBe(true);
            expect(got[i]).toBeLessThanOrEqual(SAMPLER_MASKED);
          } else expect(got[i]).toBe(logits[i]);
        }
      });
    }
  }

  it('greedy and seeded sampling never return a masked token, and draw as from logits masked on the host', async () => {
    const rt = runtime();
    const vocab = 4097;
    const rng = new Rng(404);
    const rowsN = 16;
    const logits = rng.floats(rowsN * vocab, -4, 4);
    const masks = Array.from({ length: rowsN }, (_, r) => randomMask(rng, vocab, [0.001, 0.01, 0.1, 0.5][r % 4]!));
    const rows: SamplingRow[] = masks.map((_, r) => ({
      ...GREEDY_SAMPLING_ROW,
      temperature: r < 4 ? 0 : 1,
      topP: r % 3 === 0 ? 0.9 : 1,
      seed: 77 + r,
      position: 100 + 3 * r,
      logprobs: true,
    }));
    const got = await maskAndSample(rt, logits, vocab, rows, masks);
    // the same logits with disallowed tokens at -inf, which the sampler masks as it masks NaN
    const hostMasked = Float32Array.from(tokenMaskRef(logits, vocab, masks));
    const want = await maskAndSample(rt, hostMasked, vocab, rows, null);
    expect([...got.tokenIds]).toEqual([...want.tokenIds]);
    expect([...got.logprobs!]).toEqual([...want.logprobs!]);
    masks.forEach((mask, r) => {
      const id = got.tokenIds[r]!;
      expect(allows(mask, id), `row ${r} drew masked token ${id}`).toBe(true);
      const row = tokenMaskRef(logits.subarray(r * vocab, (r + 1) * vocab), vocab, [mask]);
      if (rows[r]!.temperature === 0) expect(id).toBe(argmaxRef(row));
      // logprobs are of the masked distribution
      expect(got.logprobs![r]).toBeCloseTo(logSoftmax(row)[id]!, 4);
    });
  });

  it('a mask allowing one token forces it, even the least likely, with logprob 0', async () => {
    const rt = runtime();
    const vocab = 1000;
    const rng = new Rng(8);
    const logits = rng.floats(4 * vocab, -3, 3);
    const forced = [0, 999, 500, argmaxRef(logits.subarray(3 * vocab)) === 17 ? 18 : 17];
    // row 1's token is made the least likely of its row
    logits[vocab + 999] = -50;
    const rows = [0, 1, 2, 3].map((r) => ({ ...GREEDY_SAMPLING_ROW, temperature: r % 2, seed: r, position: 5, logprobs: true }));
    const got = await maskAndSample(
      rt,
      logits,
      vocab,
      rows,
      forced.map((t) => maskOf(vocab, [t])),
    );
    expect([...got.tokenIds]).toEqual(forced);
    for (const lp of got.logprobs!) expect(lp).toBeCloseTo(0, 5);
  });

  it('top logprobs list only allowed tokens, with their masked-distribution logprobs', async () => {
    const rt = runtime();
    const vocab = 500;
    const rng = new Rng(21);
    const logits = rng.floats(vocab, -3, 3);
    const mask = randomMask(rng, vocab, 0.2);
    const got = await maskAndSample(rt, logits, vocab, [{ ...GREEDY_SAMPLING_ROW, logprobs: true, topLogprobs: 20 }], [mask]);
    const row = tokenMaskRef(logits, vocab, [mask]);
    const want = topNRef(row, 20);
    expect([...got.top!.ids.subarray(0, 20)]).toEqual(want);
    const lsm = logSoftmax(row);
    want.forEach((id, j) => expect(got.top!.logprobs[j]).toBeCloseTo(lsm[id]!, 4));
  });

  it('reuses its buffer, and records nothing for a step without masks', () => {
    const rt = runtime();
    const first = prepareTokenMasks(rt, [maskOf(100, [1])], 100)!;
    const second = prepareTokenMasks(rt, [undefined, maskOf(100, [2])], 100, first)!;
    expect(second.buffer).toBe(first.buffer);
    expect(second.count).toBe(1);
    expect(second.rows).toBe(2);
    expect(prepareTokenMasks(rt, [undefined, undefined], 100, second)).toBeNull();
  });

  it('refuses a mask of the wrong length', () => {
    let err: unknown;
    try {
      prepareTokenMasks(runtime(), [new Uint32Array(tokenMaskWords(100) + 1)], 100);
    } catch (e) {
      err = e;
    }
    expect(isAutoGlmError(err, 'internal_error')).toBe(true);
    expect((err as Error).message).toMatch(/4 words, vocab 100 needs 4|has 5 words/);
  });
});
