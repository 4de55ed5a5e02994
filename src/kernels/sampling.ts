/**
 * Sampling on the GPU: one workgroup per row turns logits into a token id (and, when
 * asked, logprobs) so only a few bytes per row come back to the host.
 *
 * Per step: `prepareSampling` uploads one 64-byte parameter record per row, `sample`
 * records the kernel into the step's command buffer, `readSamples` reads back what the
 * rows asked for. Order inside the kernel: penalties -> (temperature 0 ? argmax, lowest
 * id on ties) : temperature -> top-k -> top-p -> min-p -> one draw with
 * u = uniformFor(seed, position), by inverse CDF over the kept tokens in token-id order.
 *
 * Filters keep every token tied with the last one kept (top-k keeps all tokens equal to
 * the k-th largest; top-p keeps the smallest prefix by value whose renormalised mass over
 * the top-k survivors reaches p, ties included; min-p keeps p >= min_p * p_max).
 *
 * Logprobs (the chosen token's and the top-N alternatives) come by default from the raw
 * model distribution, log_softmax of the unprocessed logits, as vLLM does by default;
 * `logprobsMode: 'processed'` gives log_softmax of the penalised, temperature-scaled
 * logits (temperature 0 counts as 1), before top-k/top-p/min-p. Top-N are ordered by
 * logprob descending, then id ascending. A row with `forcedToken` takes that token instead
 * of drawing one and reports its logprobs the same way (prompt logprobs).
 */
import { AutoGlmError } from '../errors.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import { splitSeed } from './rng.js';
import { STORAGE_USAGE, type KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';
import { sliceTensor } from './tensor.js';
import type { TokenCounts } from './token-counts.js';

/** Most top alternatives a row may ask for (OpenAI's limit). */
export const MAX_TOP_LOGPROBS = 20;
/** u32 words per row record; must match `struct Row` in shaders/sample.wgsl. */
const ROW_WORDS = 16;
const FLAG_PROCESSED_LOGPROBS = 1;
const FLAG_FORCED = 2;
/** u32 words of sampleOutput per row: token id, logprob, 20 top ids, 20 top logprobs, rank. */
const OUTPUT_WORDS_PER_ROW = 3 + 2 * MAX_TOP_LOGPROBS;
const MAX_ROWS = 65535;

export interface SamplingRow {
  /** 0 = greedy. */
  temperature: number;
  /** 0 = off. */
  topK: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off. */
  minP: number;
  /** 1 = off. HF semantics over prompt and generated tokens. */
  repetitionPenalty: number;
  /** OpenAI semantics over generated tokens; 0 = off. */
  frequencyPenalty: number;
  presencePenalty: number;
  /** Non-negative integer up to 2^53 - 1. */
  seed: number;
  /** Absolute position of the token being sampled: the counter of the random draw. */
  position: number;
  /** Slot in the TokenCounts table, or -1 when the row uses no penalties. */
  countsSlot: number;
  /** Report the chosen token's logprob. */
  logprobs: boolean;
  /** Number of top alternatives to report, 0..20. */
  topLogprobs: number;
  /** Which distribution logprobs describe (default 'raw'). */
  logprobsMode?: 'raw' | 'processed';
  /**
   * Prompt scoring: the row's token is this one instead of a draw, and its logprob (and the
   * top alternatives) are reported as for a sampled token. Must be below the vocabulary size.
   */
  forcedToken?: number;
  /**
   * With penalties: tokens generated before this row that the counts slot does not hold yet
   * (a speculative draft row's earlier drafts), each counted as generated once more. At most
   * MAX_PENDING_TOKENS.
   */
  pendingTokens?: readonly number[];
  /** Whether TokenCounts.recordSampled adds this row's token to its slot (default true; false for a draft row, kept or not later). */
  recordCount?: boolean;
}

/** Pending tokens a row may carry (speculative drafts before it). */
export const MAX_PENDING_TOKENS = 64;

/** A row with every filter and penalty off and no logprobs: greedy argmax. Spread and override. */
export const GREEDY_SAMPLING_ROW: Readonly<SamplingRow> = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  seed: 0,
  position: 0,
  countsSlot: -1,
  logprobs: false,
  topLogprobs: 0,
};

/** The uploaded per-row parameters of one step. */
export interface SamplingBatch {
  readonly rows: number;
  /** u32 [capacity * 16] row records. */
  readonly params: GpuTensor;
  /** i32 [rows] counts slot per row (-1 = none): what TokenCounts.recordSampled takes. */
  readonly slots: GpuTensor;
  /** Largest countsSlot used (-1 if no row uses penalties). */
  readonly maxSlot: number;
  readonly wantsLogprobs: boolean;
  readonly maxTopLogprobs: number;
  /** Some row is forced (its rank is read back). */
  readonly hasForced: boolean;
  /** Rows this batch's buffer can hold (reuse it for a later step up to that many). */
  readonly capacity: number;
  readonly buffer: GPUBuffer;
}

/** Where sampled tokens land: one buffer, read back in one copy. */
export interface SampleOutput {
  readonly maxRows: number;
  /** u32 [maxRows]. */
  readonly tokenIds: GpuTensor;
  /** f32 [maxRows] as u32 bits: the chosen token's logprob. */
  readonly logprobs: GpuTensor;
  /** u32 [maxRows, 20]: top alternatives (0xffffffff past a row's topLogprobs). */
  readonly topIds: GpuTensor;
  /** f32 [maxRows, 20] as u32 bits (-inf past a row's topLogprobs). */
  readonly topLogprobs: GpuTensor;
  /** u32 [maxRows]: a forced row's token's rank (1 = the largest value). */
  readonly ranks: GpuTensor;
  readonly buffer: GPUBuffer;
}

export interface SampleArgs {
  /** f32 [batch.rows, vocab], row-major. */
  logits: GpuTensor;
  vocab: number;
  batch: SamplingBatch;
  /** Required when any row has countsSlot >= 0. */
  counts?: TokenCounts;
  out: SampleOutput;
}

export interface SampleResult {
  tokenIds: Uint32Array;
  /** Per row; present when any row asked for logprobs or top logprobs. */
  logprobs?: Float32Array;
  /** [rows, 20] row-major; present when any row asked for top logprobs. */
  top?: { ids: Uint32Array; logprobs: Float32Array };
  /**
   * Per row, present when any row is forced: a forced row's token's rank among the
   * vocabulary in its logprobs' domain (1 + the tokens with a larger value); other rows' are
   * meaningless.
   */
  ranks?: Uint32Array;
}

function invalid(param: string, message: string): AutoGlmError {
  return new AutoGlmError('invalid_request', message, { param });
}

function checkRow(r: SamplingRow, i: number): void {
  const at = `row ${i}: `;
  if (!(Number.isFinite(r.temperature) && r.temperature >= 0))
    throw invalid('temperature', `${at}temperature must be >= 0, got ${r.temperature}`);
  if (!(Number.isInteger(r.topK) && r.topK >= 0 && r.topK <= 0xffffffff))
    throw invalid('top_k', `${at}top_k must be an integer >= 0, got ${r.topK}`);
  if (!(r.topP > 0 && r.topP <= 1)) throw invalid('top_p', `${at}top_p must be in (0, 1], got ${r.topP}`);
  if (!(r.minP >= 0 && r.minP <= 1)) throw invalid('min_p', `${at}min_p must be in [0, 1], got ${r.minP}`);
  if (!(Number.isFinite(r.repetitionPenalty) && r.repetitionPenalty > 0)) {
    throw invalid('repetition_penalty', `${at}repetition_penalty must be > 0, got ${r.repetitionPenalty}`);
  }
  if (!Number.isFinite(r.frequencyPenalty)) throw invalid('frequency_penalty', `${at}frequency_penalty must be finite`);
  if (!Number.isFinite(r.presencePenalty)) throw invalid('presence_penalty', `${at}presence_penalty must be finite`);
  if (!(Number.isInteger(r.position) && r.position >= 0 && r.position <= 0xffffffff)) {
    throw invalid('position', `${at}position must be an integer in [0, 2^32), got ${r.position}`);
  }
  if (!(Number.isInteger(r.countsSlot) && r.countsSlot >= -1))
    throw invalid('counts_slot', `${at}countsSlot must be -1 or a slot, got ${r.countsSlot}`);
  if (!(Number.isInteger(r.topLogprobs) && r.topLogprobs >= 0 && r.topLogprobs <= MAX_TOP_LOGPROBS)) {
    throw invalid('top_logprobs', `${at}top_logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${r.topLogprobs}`);
  }
  if (r.forcedToken !== undefined && !(Number.isInteger(r.forcedToken) && r.forcedToken >= 0 && r.forcedToken <= 0xffffffff)) {
    throw invalid('forced_token', `${at}forcedToken must be a token id, got ${r.forcedToken}`);
  }
  const pending = r.pendingTokens ?? [];
  if (pending.length > MAX_PENDING_TOKENS || !pending.every((t) => Number.isInteger(t) && t >= 0 && t <= 0xffffffff)) {
    throw invalid('pending_tokens', `${at}pendingTokens must be at most ${MAX_PENDING_TOKENS} token ids`);
  }
}

/**
 * Validates and uploads the rows' parameters (two small writeBuffers). Pass the previous
 * step's batch as `reuse` to write into its buffer: safe once that step's recorder has
 * been submitted, since queue writes are ordered after earlier submits. A reused batch
 * too small for `rows` is destroyed and replaced (WebGPU defers the destruction until
 * work already submitted with it has finished).
 */
export function prepareSampling(rt: KernelRuntime, rows: readonly SamplingRow[], reuse?: SamplingBatch): SamplingBatch {
  if (rows.length < 1 || rows.length > MAX_ROWS) throw invalid('rows', `sampling needs 1..${MAX_ROWS} rows, got ${rows.length}`);
  const n = rows.length;
  // every row is checked before the held buffer can be given back (a refused batch leaves it held)
  rows.forEach(checkRow);
  // pending tokens (penalties over drafts) sit after the rows, in room for this many more rows
  const pendingWords = rows.reduce((sum, r) => sum + (r.pendingTokens?.length ?? 0), 0);
  const pendingRows = Math.ceil(pendingWords / ROW_WORDS);
  // an outgrown buffer goes back to the pool: the batch that grows past it takes a bigger one
  const { capacity, buffer } = rt.pool.regrow(reuse, n + pendingRows, (ROW_WORDS + 1) * 4, 16, STORAGE_USAGE, 'sampling-params');
  const words = new ArrayBuffer((capacity * ROW_WORDS + capacity) * 4);
  const u = new Uint32Array(words);
  const f = new Float32Array(words);
  const slots = new Int32Array(words, capacity * ROW_WORDS * 4, capacity);
  let maxSlot = -1;
  let wantsLogprobs = false;
  let maxTop = 0;
  let hasForced = false;
  let pendingAt = n * ROW_WORDS;
  rows.forEach((r, i) => {
    const [seedLo, seedHi] = splitSeed(r.seed);
    const o = i * ROW_WORDS;
    f[o] = r.temperature;
    u[o + 1] = r.topK;
    f[o + 2] = r.topP;
    f[o + 3] = r.minP;
    f[o + 4] = r.repetitionPenalty;
    f[o + 5] = r.frequencyPenalty;
    f[o + 6] = r.presencePenalty;
    u[o + 7] = seedLo;
    u[o + 8] = seedHi;
    u[o + 9] = r.position;
    new Int32Array(words, (o + 10) * 4, 1)[0] = r.countsSlot;
    u[o + 11] = r.topLogprobs;
    u[o + 12] = (r.logprobsMode === 'processed' ? FLAG_PROCESSED_LOGPROBS : 0) | (r.forcedToken !== undefined ? FLAG_FORCED : 0);
    u[o + 13] = r.forcedToken ?? 0;
    const pending = r.pendingTokens ?? [];
    u[o + 14] = pendingAt;
    u[o + 15] = pending.length;
    u.set(pending, pendingAt);
    pendingAt += pending.length;
    slots[i] = r.recordCount === false ? -1 : r.countsSlot;
    maxSlot = Math.max(maxSlot, r.countsSlot);
    wantsLogprobs ||= r.logprobs || r.topLogprobs > 0;
    maxTop = Math.max(maxTop, r.topLogprobs);
    hasForced ||= r.forcedToken !== undefined;
  });
  for (let i = n; i < capacity; i++) slots[i] = -1;
  const all = { buffer, byteOffset: 0, length: capacity * ROW_WORDS + capacity, dtype: 'u32' as const };
  rt.write(all, u.subarray(0, n * ROW_WORDS + pendingWords));
  rt.write(all, new Uint32Array(words, capacity * ROW_WORDS * 4, capacity), capacity * ROW_WORDS);
  return {
    rows: n,
    params: sliceTensor(all, 0, capacity * ROW_WORDS),
    slots: { buffer, byteOffset: capacity * ROW_WORDS * 4, length: n, dtype: 'i32' },
    maxSlot,
    wantsLogprobs,
    maxTopLogprobs: maxTop,
    hasForced,
    capacity,
    buffer,
  };
}

/** Allocates the output buffer once; reuse it every step. */
export function createSampleOutput(rt: KernelRuntime, maxRows: number): SampleOutput {
  if (!Number.isInteger(maxRows) || maxRows < 1 || maxRows > MAX_ROWS) throw new RangeError(`maxRows must be in 1..${MAX_ROWS}`);
  const words = maxRows * OUTPUT_WORDS_PER_ROW;
  const all = rt.tensor('u32', words, 'sample-output');
  return {
    maxRows,
    tokenIds: sliceTensor(all, 0, maxRows),
    logprobs: sliceTensor(all, maxRows, maxRows),
    topIds: sliceTensor(all, 2 * maxRows, maxRows * MAX_TOP_LOGPROBS),
    topLogprobs: sliceTensor(all, (2 + MAX_TOP_LOGPROBS) * maxRows, maxRows * MAX_TOP_LOGPROBS),
    ranks: sliceTensor(all, (2 + 2 * MAX_TOP_LOGPROBS) * maxRows, maxRows),
    buffer: all.buffer,
  };
}

/** A 16-byte stand-in bound where a kernel takes counts but no row uses them. */
const emptyCounts = new WeakMap<KernelRuntime, GpuTensor>();

function noCounts(rt: KernelRuntime): GpuTensor {
  let t = emptyCounts.get(rt);
  if (!t) {
    t = rt.upload('u32', new Uint32Array(4), 'no-counts');
    emptyCounts.set(rt, t);
  }
  return t;
}

/** Records the sampling kernel: one workgroup per row. */
export function sample(rt: KernelRuntime, rec: Recorder, args: SampleArgs): void {
  const { logits, vocab, batch, counts, out } = args;
  if (logits.dtype !== 'f32') throw new TypeError(`sample: logits must be f32, got ${logits.dtype}`);
  if (!Number.isInteger(vocab) || vocab < 1) throw new RangeError(`sample: vocab must be >= 1, got ${vocab}`);
  if (logits.length < batch.rows * vocab)
    throw new RangeError(`sample: logits hold ${logits.length} values, need ${batch.rows} x ${vocab}`);
  if (batch.rows > out.maxRows) throw new RangeError(`sample: ${batch.rows} rows but the output holds ${out.maxRows}`);
  if (batch.maxSlot >= 0) {
    if (!counts) throw new RangeError('sample: rows use penalties but no token counts were given');
    if (counts.vocab !== vocab) throw new RangeError(`sample: token counts are for vocab ${counts.vocab}, logits have ${vocab}`);
    if (batch.maxSlot >= counts.slots) throw new RangeError(`sample: counts slot ${batch.maxSlot} out of [0, ${counts.slots})`);
  }
  const kernel = rt.kernel({ shader: 'sample', bindings: ['read', 'read', 'read', 'write', 'read'], params: true });
  const table = counts?.table ?? noCounts(rt);
  const whole = { buffer: out.buffer, byteOffset: 0, length: out.maxRows * OUTPUT_WORDS_PER_ROW, dtype: 'u32' as const };
  rec.dispatch(
    kernel,
    [logits, batch.params, table, whole, batch.params],
    params()
      .u32(vocab)
      .u32(batch.rows)
      .u32(out.maxRows)
      .u32(counts ? counts.slots : 0),
    [batch.rows],
  );
}

/**
 * Reads back what the batch's rows asked for, in one copy: token ids always, logprobs if
 * any row wanted them, the [rows, 20] top alternatives if any row wanted those.
 */
export async function readSamples(rt: KernelRuntime, out: SampleOutput, batch: SamplingBatch): Promise<SampleResult> {
  const rows = batch.rows;
  const m = out.maxRows;
  const words = batch.hasForced
    ? out.ranks.byteOffset / 4 + rows
    : batch.maxTopLogprobs > 0
      ? (2 + MAX_TOP_LOGPROBS) * m + rows * MAX_TOP_LOGPROBS
      : batch.wantsLogprobs
        ? m + rows
        : rows;
  const bytes = await rt.readBytes(out.buffer, 0, words * 4);
  const result: SampleResult = { tokenIds: new Uint32Array(bytes, 0, rows) };
  if (batch.wantsLogprobs) result.logprobs = new Float32Array(bytes, m * 4, rows);
  if (batch.maxTopLogprobs > 0) {
    result.top = {
      ids: new Uint32Array(bytes, 2 * m * 4, rows * MAX_TOP_LOGPROBS),
      logprobs: new Float32Array(bytes, (2 + MAX_TOP_LOGPROBS) * m * 4, rows * MAX_TOP_LOGPROBS),
    };
  }
  if (batch.hasForced) result.ranks = new Uint32Array(bytes, out.ranks.byteOffset, rows);
  return result;
}
