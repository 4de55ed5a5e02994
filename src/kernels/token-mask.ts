/**
 * Constrained decoding on the GPU: each constrained row's bitmask of allowed tokens is
 * applied to its logits in place (disallowed ones set to a finite value the sampler treats
 * as masked), recorded after logit_bias and just before the sampling kernel, so draws,
 * logprobs and top alternatives all see only allowed tokens.
 *
 * Per step: `prepareTokenMasks` uploads the masks of the rows that have one (one
 * writeBuffer; null when no row has a mask, so an unconstrained step records nothing), and
 * `applyTokenMasks` records the kernel.
 */
import { AutoGlmError } from '../errors.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import { STORAGE_USAGE, type KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

/** u32 words of one row's mask: bit (t % 32) of word floor(t / 32) set = token t allowed. */
export function tokenMaskWords(vocab: number): number {
  return Math.ceil(vocab / 32);
}

/** The uploaded masks of one step. */
export interface TokenMaskBatch {
  /** Rows with a mask. */
  readonly count: number;
  /** Sampled rows the masks were built for (the logits rows). */
  readonly rows: number;
  readonly words: number;
  /** u32 words the buffer holds (reuse it for a later step up to that many). */
  readonly capacity: number;
  /** [count] logits rows, then [count, words] masks. */
  readonly masks: GpuTensor;
  readonly buffer: GPUBuffer;
}

/**
 * Uploads the masks of a step's sampled rows (`perRow[i]` for logits row i; undefined for a
 * row without one). Returns null, and gives `reuse` back to the pool, when no row has one.
 * Pass the previous step's batch as `reuse`: queue writes are ordered after that step's
 * submit, so its buffer can be written again.
 */
export function prepareTokenMasks(
  rt: KernelRuntime,
  perRow: readonly (Uint32Array | undefined)[],
  vocab: number,
  reuse?: TokenMaskBatch | null,
): TokenMaskBatch | null {
  const words = tokenMaskWords(vocab);
  const rows: number[] = [];
  perRow.forEach((mask, r) => {
    if (mask === undefined) return;
    if (mask.length !== words)
      throw new AutoGlmError('internal_error', `token mask of row ${r} has ${mask.length} words, vocab ${vocab} needs ${words}`);
    rows.push(r);
  });
  const count = rows.length;
  if (count === 0) {
    if (reuse) rt.pool.release(reuse.buffer);
    return null;
  }
  const total = count + count * words;
  const data = new Uint32Array(total);
  rows.forEach((r, m) => {
    data[m] = r;
    data.set(perRow[r]!, count + m * words);
  });
  const { capacity, buffer } = rt.pool.regrow(reuse, total, 4, 64, STORAGE_USAGE, 'token-mask');
  const masks: GpuTensor = { buffer, byteOffset: 0, length: total, dtype: 'u32' };
  rt.write(masks, data);
  return { count, rows: perRow.length, words, capacity, masks, buffer };
}

/** Records the masking: logits [batch.rows, vocab] f32, masked in place. */
export function applyTokenMasks(rt: KernelRuntime, rec: Recorder, logits: GpuTensor, vocab: number, batch: TokenMaskBatch): void {
  if (logits.dtype !== 'f32') throw new TypeError(`applyTokenMasks: logits must be f32, got ${logits.dtype}`);
  if (batch.words !== tokenMaskWords(vocab)) throw new RangeError(`applyTokenMasks: masks are for ${batch.words} words, vocab ${vocab}`);
  if (logits.length < batch.rows * vocab)
    throw new RangeError(`applyTokenMasks: logits hold ${logits.length} values, need ${batch.rows} x ${vocab}`);
  const kernel = rt.kernel({ shader: 'token-mask', bindings: ['write', 'read'], params: true });
  rec.dispatch(
    kernel,
    [logits, batch.masks],
    params().u32(vocab).u32(batch.words).u32(batch.count).u32(batch.rows),
    grid1d(batch.count * vocab, 256),
  );
}
