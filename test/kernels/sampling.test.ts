import { describe, expect, it } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { uniformFor, splitSeed } from '../../src/kernels/rng.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import {
  GREEDY_SAMPLING_ROW,
  MAX_TOP_LOGPROBS,
  createSampleOutput,
  prepareSampling,
  readSamples,
  sample,
  type SampleResult,
  type SamplingRow,
} from '../../src/kernels/sampling.js';
import { TokenCounts } from '../../src/kernels/token-counts.js';
import { Rng } from '../helpers/random.js';
import { useRuntime } from '../helpers/gpu.js';
import {
  argmaxRef,
  drawRef,
  keptDistribution,
  logSoftmax,
  processLogits,
  rankByValue,
  topNRef,
  type RefCounts,
} from '../reference/sampling.js';

const runtime = useRuntime();

const GREEDY = GREEDY_SAMPLING_ROW;

/** Runs one batch: logits is [rows, vocab] row-major. Outputs are poisoned first. */
async function run(
  rt: KernelRuntime,
  logits: Float32Array,
  vocab: number,
  rows: SamplingRow[],
  counts?: TokenCounts,
): Promise<SampleResult> {
  const batch = prepareSampling(rt, rows);
  const out = createSampleOutput(rt, rows.length + 3);
  rt.write(
    { buffer: out.buffer, byteOffset: 0, length: out.buffer.size / 4, dtype: 'u32' },
    new Uint32Array(out.buffer.size / 4).fill(0x7fc00000),
  );
  const rec = rt.recorder();
  const lt = rt.upload('f32', logits);
  sample(rt, rec, { logits: lt, vocab, batch, out, ...(counts ? { counts } : {}) });
  await rec.submit();
  const result = await readSamples(rt, out, batch);
  rt.destroyBuffer(lt.buffer);
  rt.destroyBuffer(out.buffer);
  rt.destroyBuffer(batch.buffer);
  return result;
}

function repeatRows(row: Float32Array, n: number): Float32Array {
  const out = new Float32Array(row.length * n);
  for (let r = 0; r < n; r++) out.set(row, r * row.length);
  return out;
}

function rowOf(logits: Float32Array, vocab: number, r: number): Float32Array {
  return logits.subarray(r * vocab, (r + 1) * vocab);
}

/** Upper 99.99% quantile of chi-square with k degrees of freedom (Wilson-Hilferty). */
function chiSquareCritical(k: number): number {
  const z = 3.719;
  const a = 2 / (9 * k);
  return k * (1 - a + z * Math.sqrt(a)) ** 3;
}

/** Chi-square statistic of observed tokens against expected probabilities; never-expected tokens must not occur. */
function chiSquare(tokens: ArrayLike<number>, probs: ArrayLike<number>): { stat: number; dof: number } {
  const n = tokens.length;
  const observed = new Float64Array(probs.length);
  for (let i = 0; i < n; i++) {
    const t = tokens[i]!;
    expect(probs[t], `token ${t} has probability 0`).toBeGreaterThan(0);
    observed[t]! += 1;
  }
  // bins with expectation under 5 are pooled, as the test's approximation needs
  let stat = 0;
  let bins = 0;
  let pooledO = 0;
  let pooledE = 0;
  for (let i = 0; i < probs.length; i++) {
    const e = probs[i]! * n;
    if (e === 0) continue;
    if (e < 5) {
      pooledO += observed[i]!;
      pooledE += e;
      continue;
    }
    stat += (observed[i]! - e) ** 2 / e;
    bins++;
  }
  if (pooledE > 0) {
    stat += (pooledO - pooledE) ** 2 / pooledE;
    bins++;
  }
  return { stat, dof: Math.max(1, bins - 1) };
}

const SIZES = [1, 7, 33, 129, 4097, 151936];

describe('rng', () => {
  it('splits seeds up to 2^53 and rejects others', () => {
    expect(splitSeed(2 ** 53 - 1)).toEqual([0xffffffff, 0x1fffff]);
    expect(splitSeed(5 * 2 ** 32 + 7)).toEqual([7, 5]);
    for (const bad of [-1, 0.5, 2 ** 53, NaN]) {
      expect(() => splitSeed(bad)).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    }
  });

  it('is uniform and depends on every input', () => {
    const n = 20000;
    const bins = new Float64Array(20);
    for (let i = 0; i < n; i++) bins[Math.floor(uniformFor(12345, i) * 20)]! += 1;
    const stat = bins.reduce((s, o) => s + (o - n / 20) ** 2 / (n / 20), 0);
    expect(stat).toBeLessThan(chiSquareCritical(19));
    expect(uniformFor(1, 0)).not.toBe(uniformFor(2, 0));
    expect(uniformFor(1, 0)).not.toBe(uniformFor(1 + 2 ** 32, 0));
    expect(uniformFor(1, 0)).not.toBe(uniformFor(1, 1));
  });

  it('the shader draws with the same u as uniformFor (equal logits: token = floor(u * 4096))', async () => {
    const rt = runtime();
    const vocab = 4096;
    const seeds = [0, 1, 42, 2 ** 32, 2 ** 32 + 99, 2 ** 53 - 1];
    const rows: SamplingRow[] = [];
    for (let i = 0; i < 120; i++) {
      rows.push({ ...GREEDY, temperature: 0.8, seed: seeds[i % seeds.length]!, position: (i * 7919 + (i % 3) * 2 ** 31) % 2 ** 32 });
    }
    const got = await run(rt, new Float32Array(vocab * rows.length).fill(0.25), vocab, rows);
    const want = rows.map((r) => Math.floor(uniformFor(r.seed, r.position) * vocab));
    expect(Array.from(got.tokenIds)).toEqual(want);
  });
});

describe('greedy', () => {
  for (const vocab of SIZES) {
    it(`argmax, lowest id on ties, vocab=${vocab}`, async () => {
      const rt = runtime();
      const rows = vocab > 5000 ? 3 : 8;
      const rng = new Rng(vocab * 7 + 1);
      const logits = rng.floats(vocab * rows, -8, 8);
      // rows 1 and 2: the maximum appears twice (and, in row 2, also at the last id)
      for (const r of [1, 2]) {
        const row = rowOf(logits, vocab, r);
        if (vocab < 3) continue;
        const a = Math.floor(vocab / 3);
        const b = Math.floor((2 * vocab) / 3);
        row[a] = 9;
        row[b] = 9;
        if (r === 2) row[vocab - 1] = 9;
      }
      const got = await run(
        rt,
        logits,
        vocab,
        Array.from({ length: rows }, (_, i) => ({ ...GREEDY, seed: i, position: i })),
      );
      const want = Array.from({ length: rows }, (_, r) => argmaxRef(rowOf(logits, vocab, r)));
      expect(Array.from(got.tokenIds)).toEqual(want);
      expect(got.logprobs).toBeUndefined();
      expect(got.top).toBeUndefined();
    });
  }
});

describe('logprobs and top-N', () => {
  for (const vocab of SIZES) {
    for (const mode of ['raw', 'processed'] as const) {
      it(`${mode} logprobs match the float64 reference, vocab=${vocab}`, async () => {
        const rt = runtime();
        const rng = new Rng(vocab * 13 + (mode === 'raw' ? 0 : 1));
        const n = vocab > 5000 ? 2 : 4;
        const logits = rng.floats(vocab * n, -6, 6);
        const rows: SamplingRow[] = Array.from({ length: n }, (_, i) => ({
          ...GREEDY,
          temperature: [0, 0.7, 1.3, 2][i]!,
          topK: i === 1 ? 3 : 0,
          topP: i === 2 ? 0.8 : 1,
          seed: 99 + i,
          position: 1000 + i,
          logprobs: true,
          topLogprobs: [MAX_TOP_LOGPROBS, 5, 1, 0][i]!,
          logprobsMode: mode,
        }));
        const got = await run(rt, logits, vocab, rows);
        for (let r = 0; r < n; r++) {
          const row = rows[r]!;
          const values = mode === 'raw' ? Float64Array.from(rowOf(logits, vocab, r)) : processLogits(rowOf(logits, vocab, r), row);
          const lp = logSoftmax(values);
          const token = got.tokenIds[r]!;
          expect(token).toBeLessThan(vocab);
          expect(Math.abs(got.logprobs![r]! - lp[token]!)).toBeLessThanOrEqual(1e-4);
          const want = topNRef(values, Math.min(row.topLogprobs, vocab));
          const ids = Array.from(got.top!.ids.subarray(r * 20, r * 20 + 20));
          expect(ids.slice(0, want.length)).toEqual(want);
          expect(ids.slice(want.length).every((id) => id === 0xffffffff)).toBe(true);
          for (let j = 0; j < want.length; j++) {
            expect(Math.abs(got.top!.logprobs[r * 20 + j]! - lp[want[j]!]!)).toBeLessThanOrEqual(1e-4);
          }
          for (let j = want.length; j < 20; j++) expect(got.top!.logprobs[r * 20 + j]).toBe(-Infinity);
        }
      });
    }
  }

  for (const vocab of [7, 4097, 151936]) {
    it(`a forced row reports the given token's logprob, rank and top-N, and draws nothing, vocab=${vocab}`, async () => {
      const rt = runtime();
      const rng = new Rng(vocab * 17 + 5);
      const n = 3;
      const logits = rng.floats(vocab * n, -6, 6);
      // the forced token is never the argmax here: a kernel that drew or took the argmax fails
      const forced = Array.from({ length: n }, (_, r) => (argmaxRef(rowOf(logits, vocab, r)) + 1 + r) % vocab);
      const rows: SamplingRow[] = forced.map((forcedToken, i) => ({
        ...GREEDY,
        // a sampling row's parameters are ignored by the choice, not by the logprobs' domain
        temperature: [0, 0.9, 1.5][i]!,
        topK: i === 1 ? 2 : 0,
        seed: 7 + i,
        position: 30 + i,
        logprobs: true,
        topLogprobs: [5, 0, MAX_TOP_LOGPROBS][i]!,
        // the last row's logprobs (and rank) are of the temperature-scaled values
        logprobsMode: i === 2 ? 'processed' : 'raw',
        forcedToken,
      }));
      const got = await run(rt, logits, vocab, rows);
      for (let r = 0; r < n; r++) {
        expect(got.tokenIds[r]).toBe(forced[r]);
        const values = r === 2 ? processLogits(rowOf(logits, vocab, r), rows[r]!) : Float64Array.from(rowOf(logits, vocab, r));
        const lp = logSoftmax(values);
        expect(Math.abs(got.logprobs![r]! - lp[forced[r]!]!)).toBeLessThanOrEqual(1e-4);
        const want = topNRef(values, Math.min(rows[r]!.topLogprobs, vocab));
        expect(Array.from(got.top!.ids.subarray(r * 20, r * 20 + want.length))).toEqual(want);
        // rank: 1 + the tokens above it, in f32 as the kernel compares
        const mine = Math.fround(values[forced[r]!]!);
        const rank = 1 + Array.from(values).filter((v) => Math.fround(v) > mine).length;
        expect(got.ranks![r]).toBe(rank);
        expect(rank).toBeGreaterThan(1);
      }
      // no forced row: no ranks read back
      expect((await run(rt, logits, vocab, [{ ...GREEDY }])).ranks).toBeUndefined();
    });
  }

  it('top-N breaks ties by lowest id', async () => {
    const rt = runtime();
    const vocab = 600;
    const logits = new Float32Array(vocab).fill(-3);
    for (const id of [50, 10, 590, 300, 7]) logits[id] = 2;
    logits[400] = 5;
    const got = await run(rt, logits, vocab, [{ ...GREEDY, logprobs: true, topLogprobs: 4 }]);
    expect(Array.from(got.top!.ids.subarray(0, 4))).toEqual([400, 7, 10, 50]);
    // more ties than places among the -3s: the lowest ids fill the rest
    const got2 = await run(rt, logits, vocab, [{ ...GREEDY, logprobs: true, topLogprobs: 9 }]);
    expect(Array.from(got2.top!.ids.subarray(0, 9))).toEqual([400, 7, 10, 50, 300, 590, 0, 1, 2]);
  });
});

/** Draws `rows` tokens from one logits row at consecutive positions. */
async function drawMany(
  rt: KernelRuntime,
  row: Float32Array,
  params: Partial<SamplingRow>,
  rows: number,
  counts?: TokenCounts,
): Promise<Uint32Array> {
  const specs = Array.from({ length: rows }, (_, i) => ({ ...GREEDY, seed: 2024, ...params, position: i }));
  return (await run(rt, repeatRows(row, rows), row.length, specs, counts)).tokenIds;
}

describe('filters never return a token outside their set', () => {
  for (const vocab of [33, 129, 4097, 151936]) {
    const rows = vocab > 5000 ? 8 : 96;
    it(`top-k, vocab=${vocab}`, async () => {
      const rt = runtime();
      const row = new Rng(vocab + 5).floats(vocab, -3, 3);
      const k = 5;
      const tokens = await drawMany(rt, row, { temperature: 3, topK: k }, rows);
      const allowed = new Set(rankByValue(row).slice(0, k));
      for (const t of tokens) expect(allowed.has(t), `token ${t}`).toBe(true);
      expect(new Set(tokens).size).toBeGreaterThan(1);
    });

    it(`top-p, vocab=${vocab}`, async () => {
      const rt = runtime();
      const row = new Rng(vocab + 6).floats(vocab, -2, 6);
      const topP = 0.6;
      const tokens = await drawMany(rt, row, { temperature: 1.2, topP }, rows);
      // the smallest nucleus reaching p (a 1e-5 margin covers f32 rounding at the boundary)
      const values = processLogits(row, {
        temperature: 1.2,
        topK: 0,
        topP,
        minP: 0,
        repetitionPenalty: 1,
        frequencyPenalty: 0,
        presencePenalty: 0,
      });
      const probs = logSoftmax(values).map(Math.exp);
      const allowed = new Set<number>();
      let cum = 0;
      for (const id of rankByValue(values)) {
        allowed.add(id);
        cum += probs[id]!;
        if (cum >= topP + 1e-5) break;
      }
      for (const t of tokens) expect(allowed.has(t), `token ${t}`).toBe(true);
    });

    it(`min-p, vocab=${vocab}`, async () => {
      const rt = runtime();
      const row = new Rng(vocab + 7).floats(vocab, -2, 6);
      const minP = 0.3;
      const tokens = await drawMany(rt, row, { temperature: 0.9, minP }, rows);
      const values = processLogits(row, {
        temperature: 0.9,
        topK: 0,
        topP: 1,
        minP,
        repetitionPenalty: 1,
        frequencyPenalty: 0,
        presencePenalty: 0,
      });
      const m = values.reduce((a, b) => Math.max(a, b), -Infinity);
      for (const t of tokens) expect(Math.exp(values[t]! - m)).toBeGreaterThanOrEqual(minP * (1 - 1e-5));
    });
  }
});

describe('distributions match softmax within a chi-square bound (4000 positions)', () => {
  const N = 4000;
  const cases: { name: string; vocab: number; params: Partial<SamplingRow> }[] = [
    { name: 'temperature 0.7', vocab: 7, params: { temperature: 0.7 } },
    { name: 'temperature 1.5', vocab: 33, params: { temperature: 1.5 } },
    { name: 'top-k 4', vocab: 33, params: { temperature: 1, topK: 4 } },
    { name: 'top-p 0.7', vocab: 33, params: { temperature: 1, topP: 0.7 } },
    { name: 'top-k 10 + top-p 0.8 + min-p 0.05', vocab: 129, params: { temperature: 0.8, topK: 10, topP: 0.8, minP: 0.05 } },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const rt = runtime();
      const row = new Rng(c.vocab * 3 + 11).floats(c.vocab, -2, 2);
      const p = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0, ...c.params };
      const tokens = await drawMany(rt, row, c.params, N);
      const probs = keptDistribution(processLogits(row, p), p);
      const { stat, dof } = chiSquare(tokens, probs);
      expect(stat).toBeLessThan(chiSquareCritical(dof));
    });
  }
});

describe('determinism', () => {
  it('the same (seed, position, logits) gives the same token whatever the row order or batch size', async () => {
    const rt = runtime();
    const vocab = 129;
    const n = 24;
    const rng = new Rng(77);
    const logits = rng.floats(vocab * n, -3, 3);
    const rows: SamplingRow[] = Array.from({ length: n }, (_, i) => ({
      ...GREEDY,
      temperature: 0.5 + (i % 4) * 0.5,
      topK: i % 3 === 0 ? 20 : 0,
      topP: i % 2 === 0 ? 0.9 : 1,
      seed: 1000 + i * 2 ** 33,
      position: i * 31,
    }));
    const all = (await run(rt, logits, vocab, rows)).tokenIds;
    const order = Array.from({ length: n }, (_, i) => (i * 7) % n);
    const shuffled = new Float32Array(vocab * n);
    order.forEach((src, dst) => shuffled.set(rowOf(logits, vocab, src), dst * vocab));
    const perm = (
      await run(
        rt,
        shuffled,
        vocab,
        order.map((i) => rows[i]!),
      )
    ).tokenIds;
    order.forEach((src, dst) => expect(perm[dst]).toBe(all[src]));
    for (const i of [0, 5, 23]) {
      const alone = (await run(rt, rowOf(logits, vocab, i).slice(), vocab, [rows[i]!])).tokenIds;
      expect(alone[0]).toBe(all[i]);
    }
    // and the draw is the reference's draw with u = uniformFor(seed, position)
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      const probs = keptDistribution(processLogits(rowOf(logits, vocab, i), r), r);
      const u = uniformFor(r.seed, r.position);
      const ref = drawRef(probs, u);
      if (ref !== all[i]) {
        // only a boundary within float rounding may differ
        let cum = 0;
        for (let t = 0; t <= ref; t++) cum += probs[t]!;
        expect(Math.min(Math.abs(cum - u), Math.abs(cum - probs[ref]! - u))).toBeLessThan(1e-5);
      }
    }
  });
});

describe('batch reuse', () => {
  it('a reused batch keeps its buffer while it fits and grows when it does not', async () => {
    const rt = runtime();
    const vocab = 33;
    const logits = new Rng(8).floats(vocab * 40, -2, 2);
    const lt = rt.upload('f32', logits);
    const out = createSampleOutput(rt, 40);
    const first = prepareSampling(rt, [GREEDY, GREEDY]);
    const same = prepareSampling(rt, Array(10).fill(GREEDY), first);
    expect(same.buffer).toBe(first.buffer);
    const grown = prepareSampling(rt, Array(40).fill(GREEDY), same);
    expect(grown.capacity).toBeGreaterThanOrEqual(40);
    const rec = rt.recorder();
    sample(rt, rec, { logits: lt, vocab, batch: grown, out });
    await rec.submit();
    const got = await readSamples(rt, out, grown);
    expect(Array.from(got.tokenIds)).toEqual(Array.from({ length: 40 }, (_, r) => argmaxRef(rowOf(logits, vocab, r))));
  });
});

describe('penalties', () => {
  const vocab = 33;
  const prompt = [1, 2, 3, 3, 9, 20];
  const generated = [3, 4, 4, 4, 9, 30];

  function refCounts(): RefCounts {
    const g = new Float64Array(vocab);
    const p = new Float64Array(vocab);
    for (const id of generated) g[id]! += 1;
    for (const id of prompt) p[id] = 1;
    return { generated: g, inPrompt: p };
  }

  it('processed logprobs match the reference under repetition, frequency and presence penalties', async () => {
    const rt = runtime();
    const counts = TokenCounts.create(rt, { slots: 4, vocab });
    counts.resetSlot(2, prompt, generated);
    counts.resetSlot(0, [5], []);
    const rng = new Rng(5150);
    const logits = rng.floats(vocab * 3, -4, 4);
    const rows: SamplingRow[] = [
      {
        ...GREEDY,
        repetitionPenalty: 1.3,
        frequencyPenalty: 0.4,
        presencePenalty: 0.25,
        countsSlot: 2,
        logprobs: true,
        topLogprobs: 20,
        logprobsMode: 'processed',
      },
      {
        ...GREEDY,
        temperature: 0.8,
        repetitionPenalty: 0.7,
        frequencyPenalty: -0.2,
        presencePenalty: 0.5,
        countsSlot: 2,
        logprobs: true,
        topLogprobs: 20,
        logprobsMode: 'processed',
      },
      { ...GREEDY, temperature: 1, repetitionPenalty: 2, countsSlot: -1, logprobs: true, topLogprobs: 20, logprobsMode: 'processed' },
    ];
    const got = await run(rt, logits, vocab, rows, counts);
    for (let r = 0; r < rows.length; r++) {
      const values = processLogits(rowOf(logits, vocab, r), rows[r]!, rows[r]!.countsSlot >= 0 ? refCounts() : undefined);
      const lp = logSoftmax(values);
      const want = topNRef(values, 20);
      expect(Array.from(got.top!.ids.subarray(r * 20, r * 20 + 20))).toEqual(want);
      for (let j = 0; j < 20; j++) expect(Math.abs(got.top!.logprobs[r * 20 + j]! - lp[want[j]!]!)).toBeLessThanOrEqual(1e-4);
      if (rows[r]!.temperature === 0) expect(got.tokenIds[r]).toBe(argmaxRef(values));
    }
    counts.destroy();
  });

  it('pending tokens (a draft row’s earlier drafts) count as generated once more each, exactly as if the slot held them; recordCount false leaves the slot alone', async () => {
    const rt = runtime();
    const counts = TokenCounts.create(rt, { slots: 2, vocab });
    const pending = [4, 31, 4, 2];
    counts.resetSlot(0, prompt, generated);
    counts.resetSlot(1, prompt, [...generated, ...pending]);
    const rng = new Rng(4242);
    const logits = repeatRows(rng.floats(vocab, -3, 3), 6);
    const penalties = {
      repetitionPenalty: 1.4,
      frequencyPenalty: 0.6,
      presencePenalty: 0.3,
      logprobs: true,
      topLogprobs: 20,
      logprobsMode: 'processed' as const,
    };
    // three kinds of row, each twice: the slot that holds the pending tokens, and the one that does not plus them
    const rows: SamplingRow[] = [
      { ...GREEDY, ...penalties, countsSlot: 1 },
      { ...GREEDY, ...penalties, countsSlot: 0, pendingTokens: pending, recordCount: false },
      { ...GREEDY, ...penalties, temperature: 0.9, seed: 77, position: 12, countsSlot: 1 },
      { ...GREEDY, ...penalties, temperature: 0.9, seed: 77, position: 12, countsSlot: 0, pendingTokens: pending, recordCount: false },
      { ...GREEDY, ...penalties, countsSlot: 0 },
      { ...GREEDY, ...penalties, countsSlot: 0, pendingTokens: [] },
    ];
    const batch = prepareSampling(rt, rows);
    const out = createSampleOutput(rt, rows.length);
    const lt = rt.upload('f32', logits);
    const rec = rt.recorder();
    sample(rt, rec, { logits: lt, vocab, batch, counts, out });
    counts.recordSampled(rec, out.tokenIds, batch.slots, batch.rows);
    await rec.submit();
    const got = await readSamples(rt, out, batch);
    for (const [a, b] of [
      [0, 1],
      [2, 3],
      [4, 5],
    ] as const) {
      expect(got.tokenIds[b]).toBe(got.tokenIds[a]);
      expect(Array.from(got.top!.ids.subarray(b * 20, b * 20 + 20))).toEqual(Array.from(got.top!.ids.subarray(a * 20, a * 20 + 20)));
      for (let j = 0; j < 20; j++) expect(got.top!.logprobs[b * 20 + j]).toBeCloseTo(got.top!.logprobs[a * 20 + j]!, 5);
    }
    // and the pending tokens do change the draw's distribution (the test is not vacuous)
    const without = processLogits(rowOf(logits, vocab, 4), rows[4]!, refCounts());
    expect(Array.from(got.top!.ids.subarray(20, 40))).not.toEqual(topNRef(without, 20));
    // rows 1 and 3 were not recorded; row 5's token was, into slot 0 (as was row 4's)
    const slot0 = await counts.readSlot(0);
    const want = new Uint32Array(vocab);
    for (const id of generated) want[id]! += 1;
    want[got.tokenIds[4]!]! += 1;
    want[got.tokenIds[5]!]! += 1;
    expect(Array.from(slot0.generated)).toEqual(Array.from(want));
    for (const b of [lt.buffer, out.buffer, batch.buffer]) rt.destroyBuffer(b);
    counts.destroy();
  });

  it('greedy picks the penalised argmax', async () => {
    const rt = runtime();
    const counts = TokenCounts.create(rt, { slots: 1, vocab });
    counts.resetSlot(0, [7], [7]);
    const logits = new Float32Array(vocab).fill(0.5);
    logits[7] = 3;
    logits[8] = 2.5;
    const plain = await run(rt, logits, vocab, [{ ...GREEDY, countsSlot: 0 }], counts);
    expect(plain.tokenIds[0]).toBe(7);
    const penalised = await run(rt, logits, vocab, [{ ...GREEDY, countsSlot: 0, repetitionPenalty: 1.3 }], counts);
    expect(penalised.tokenIds[0]).toBe(8);
    counts.destroy();
  });

  it('sampled tokens are counted on the GPU, step after step, with no readback', async () => {
    const rt = runtime();
    const counts = TokenCounts.create(rt, { slots: 3, vocab });
    counts.resetSlot(0, prompt);
    counts.resetSlot(1, [], [4]);
    const rng = new Rng(99);
    const logits = rt.upload('f32', rng.floats(vocab * 3, -1, 1));
    const out = createSampleOutput(rt, 3);
    const host = [new Float64Array(vocab), new Float64Array(vocab)];
    host[1]![4] = 1;
    let batch;
    for (let step = 0; step < 12; step++) {
      const rows: SamplingRow[] = [
        { ...GREEDY, temperature: 1, seed: 1, position: step, countsSlot: 0, frequencyPenalty: 0.5 },
        { ...GREEDY, temperature: 1, seed: 2, position: step, countsSlot: 1, presencePenalty: 0.5 },
        { ...GREEDY, temperature: 1, seed: 3, position: step, countsSlot: -1 },
      ];
      batch = prepareSampling(rt, rows, batch);
      const rec = rt.recorder();
      sample(rt, rec, { logits, vocab, batch, counts, out });
      counts.recordSampled(rec, out.tokenIds, batch.slots, batch.rows);
      await rec.submit();
      const got = await readSamples(rt, out, batch);
      host[0]![got.tokenIds[0]!]! += 1;
      host[1]![got.tokenIds[1]!]! += 1;
    }
    const s0 = await counts.readSlot(0);
    const s1 = await counts.readSlot(1);
    const s2 = await counts.readSlot(2);
    expect(Array.from(s0.generated)).toEqual(Array.from(host[0]!));
    expect(Array.from(s1.generated)).toEqual(Array.from(host[1]!));
    expect(s2.generated.every((c) => c === 0)).toBe(true);
    expect(Array.from(s0.inPrompt).flatMap((v, i) => (v ? [i] : []))).toEqual([1, 2, 3, 9, 20]);
    counts.destroy();
  });

  it('penalised sampling matches the reference distribution (chi-square, 4000 positions)', async () => {
    const rt = runtime();
    const counts = TokenCounts.create(rt, { slots: 1, vocab });
    counts.resetSlot(0, prompt, generated);
    const row = new Rng(31337).floats(vocab, -1.5, 1.5);
    const p = { temperature: 0.9, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1.5, frequencyPenalty: 0.3, presencePenalty: 0.6 };
    const tokens = await drawMany(rt, row, { ...p, countsSlot: 0 }, 4000, counts);
    const { stat, dof } = chiSquare(tokens, keptDistribution(processLogits(row, p, refCounts()), p));
    expect(stat).toBeLessThan(chiSquareCritical(dof));
    counts.destroy();
  });
});

describe('bad input', () => {
  it('invalid parameters are typed invalid_request errors', () => {
    const rt = runtime();
    const bad: Partial<SamplingRow>[] = [
      { temperature: -1 },
      { temperature: NaN },
      { topK: 1.5 },
      { topP: 0 },
      { topP: 1.1 },
      { minP: -0.1 },
      { repetitionPenalty: 0 },
      { frequencyPenalty: Infinity },
      { seed: -3 },
      { position: -1 },
      { countsSlot: -2 },
      { topLogprobs: 21 },
      { forcedToken: -1 },
      { forcedToken: 2.5 },
    ];
    for (const b of bad) {
      let caught: unknown;
      try {
        prepareSampling(rt, [{ ...GREEDY, ...b }]);
      } catch (e) {
        caught = e;
      }
      expect(isAutoGlmError(caught, 'invalid_request'), JSON.stringify(b)).toBe(true);
    }
  });

  it('NaN and -inf logits are never chosen; an all-masked row falls back to id 0', async () => {
    const rt = runtime();
    const vocab = 9;
    const logits = new Float32Array([NaN, -Infinity, 1, NaN, 0.5, -Infinity, 0.9, NaN, 0.2]);
    const tokens = await drawMany(rt, logits, { temperature: 5 }, 200);
    for (const t of tokens) expect([2, 4, 6, 8]).toContain(t);
    const greedy = await run(rt, logits, vocab, [{ ...GREEDY, logprobs: true }]);
    expect(greedy.tokenIds[0]).toBe(2);
    expect(Number.isFinite(greedy.logprobs![0]!)).toBe(true);
    const masked = await run(rt, new Float32Array(vocab).fill(-Infinity), vocab, [{ ...GREEDY, temperature: 1 }]);
    expect(masked.tokenIds[0]).toBe(0);
  });
});
