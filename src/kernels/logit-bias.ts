/**
 * logit_bias on the GPU: a small scatter that adds each sampled row's biases to its logits
 * in place, recorded just before the sampling kernel, so that sampling, the returned
 * logprobs and the top alternatives all see the biased logits (OpenAI's logit_bias edits the
 * model's logits; penalties and temperature still apply on top).
 *
 * Per step: `prepareLogitBias` uploads the entries of every row that has any (one small
 * writeBuffer; null when no row has biases, so a step without them records nothing), and
 * `addLogitBias` records the kernel.
 */
import { AutoGlmError } from '../errors.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import { STORAGE_USAGE, type KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

/** One row's biases: [token id, bias] pairs, each token at most once. */
export type RowLogitBias = readonly (readonly [number, number])[];

/**
 * A bias that bans a token outright (min_tokens' ban on EOS), where -100 only makes it
 * unlikely: any real logit plus this is at or below the sampler's -BIG (sample.wgsl), which
 * counts as probability 0, and a sum that overflows to -inf is masked the same way.
 */
export const BANNED_TOKEN_BIAS = -3.4e38;

/** u32 words per entry; must match `struct Entry` in shaders/logit-bias.wgsl. */
const ENTRY_WORDS = 3;

/** The uploaded entries of one step. */
export interface LogitBiasBatch {
  /** Entries in use. */
  readonly count: number;
  /** Sampled rows the entries were built for. */
  readonly rows: number;
  /** Entries the buffer holds (reuse it for a later step up to that many). */
  readonly capacity: number;
  readonly entries: GpuTensor;
  readonly buffer: GPUBuffer;
}

function invalid(message: string): AutoGlmError {
  return new AutoGlmError('invalid_request', message, { param: 'logit_bias' });
}

/**
 * Validates and uploads the biases of a step's sampled rows (`perRow[i]` for logits row i;
 * undefined or empty for none). Returns null, and gives `reuse` back to the pool, when no
 * row has any. Pass the previous step's batch as `reuse`: queue writes are ordered after
 * that step's submit, so its buffer can be written again.
 */
export function prepareLogitBias(
  rt: KernelRuntime,
  perRow: readonly (RowLogitBias | undefined)[],
  vocab: number,
  reuse?: LogitBiasBatch | null,
): LogitBiasBatch | null {
  let count = 0;
  for (const row of perRow) count += row?.length ?? 0;
  if (count === 0) {
    if (reuse) rt.pool.release(reuse.buffer);
    return null;
  }
  const words = new Uint32Array(count * ENTRY_WORDS);
  const floats = new Float32Array(words.buffer);
  let e = 0;
  perRow.forEach((row, r) => {
    const seen = new Set<number>();
    for (const [token, bias] of row ?? []) {
      if (!(Number.isInteger(token) && token >= 0 && token < vocab))
        throw invalid(`row ${r}: token ${token} is outside the vocabulary of ${vocab}`);
      if (!Number.isFinite(bias)) throw invalid(`row ${r}: the bias of token ${token} must be finite, got ${bias}`);
      // two entries for one logit would race in the kernel
      if (seen.has(token)) throw invalid(`row ${r}: token ${token} has two biases`);
      seen.add(token);
      words[e * ENTRY_WORDS] = r;
      words[e * ENTRY_WORDS + 1] = token;
      floats[e * ENTRY_WORDS + 2] = bias;
      e++;
    }
  });
  const { capacity, buffer } = rt.pool.regrow(reuse, count, ENTRY_WORDS * 4, 64, STORAGE_USAGE, 'logit-bias');
  const entries: GpuTensor = { buffer, byteOffset: 0, length: count * ENTRY_WORDS, dtype: 'u32' };
  rt.write(entries, words);
  return { count, rows: perRow.length, capacity, entries, buffer };
}

/** Records the scatter: logits [batch.rows, vocab] f32, biased in place. */
export function addLogitBias(rt: KernelRuntime, rec: Recorder, logits: GpuTensor, vocab: number, batch: LogitBiasBatch): void {
  if (logits.dtype !== 'f32') throw new TypeError(`addLogitBias: logits must be f32, got ${logits.dtype}`);
  if (logits.length < batch.rows * vocab)
    throw new RangeError(`addLogitBias: logits hold ${logits.length} values, need ${batch.rows} x ${vocab}`);
  const kernel = rt.kernel({ shader: 'logit-bias', bindings: ['write', 'read'], params: true });
  rec.dispatch(kernel, [logits, batch.entries], params().u32(vocab).u32(batch.count).u32(batch.rows), grid1d(batch.count, 64));
}
