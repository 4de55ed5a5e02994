/**
 * Per-slot token counts for the sampling penalties, kept on the GPU so that the engine
 * never reads sampled tokens back just to keep them right.
 *
 * One u32 per (slot, token): bits 0..30 count the token among generated tokens
 * (frequency and presence penalties, OpenAI semantics), bit 31 says it occurs in the
 * prompt (the repetition penalty, HF semantics, looks at prompt and generated tokens).
 * The engine keeps one slot per running sequence and resets it at admission.
 */
import { AutoGlmError } from '../errors.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

export const PROMPT_BIT = 0x80000000;
export const GENERATED_MASK = 0x7fffffff;

export interface TokenCountsOptions {
  /** Number of sequences tracked at once (one slot each). */
  slots: number;
  vocab: number;
}

export class TokenCounts {
  /** Tokens to add to slots' generated counts at the next flushQueued (speculative drafts kept after their step). */
  private queued: { slot: number; token: number }[] = [];
  /** u32 ids and i32 slots the queued additions are uploaded to (grown as needed). */
  private queueTensors: { ids: GpuTensor; slots: GpuTensor; capacity: number } | null = null;

  private constructor(
    private readonly rt: KernelRuntime,
    readonly slots: number,
    readonly vocab: number,
    /** u32 [slots, vocab]. */
    readonly table: GpuTensor,
  ) {}

  /** Most slots one storage binding can hold for this vocabulary on this device. */
  static maxSlots(rt: KernelRuntime, vocab: number): number {
    return Math.floor(rt.maxBindingBytes / (4 * vocab));
  }

  static create(rt: KernelRuntime, options: TokenCountsOptions): TokenCounts {
    const { slots, vocab } = options;
    if (!Number.isInteger(slots) || slots < 1 || !Number.isInteger(vocab) || vocab < 1) {
      throw new AutoGlmError('invalid_request', `token counts need integer slots >= 1 and vocab >= 1, got ${slots} x ${vocab}`);
    }
    const max = TokenCounts.maxSlots(rt, vocab);
    if (slots > max) {
      // the sampler binds the whole table at once
      throw new AutoGlmError(
        'gpu_out_of_memory',
        `token counts for ${slots} slots x ${vocab} tokens exceed one storage binding (${rt.maxBindingBytes} bytes): at most ${max} slots`,
      );
    }
    const table = rt.tensor('u32', slots * vocab, 'token-counts');
    rt.write(table, new Uint32Array(slots * vocab));
    return new TokenCounts(rt, slots, vocab, table);
  }

  /**
   * Starts a slot over for a sequence: prompt presence plus the counts of tokens already
   * generated (a resumed request passes its earlier output so penalties continue exactly).
   */
  resetSlot(slot: number, promptTokenIds: readonly number[], generatedTokenIds: readonly number[] = []): void {
    this.checkSlot(slot);
    const row = new Uint32Array(this.vocab);
    for (const id of promptTokenIds) row[this.checkToken(id)]! |= PROMPT_BIT;
    for (const id of generatedTokenIds) {
      const i = this.checkToken(id);
      row[i] = (row[i]! & PROMPT_BIT) | (((row[i]! & GENERATED_MASK) + 1) & GENERATED_MASK);
    }
    this.rt.write(this.table, row, slot * this.vocab);
  }

  /**
   * Records one sampled token per row: counts[slots[r], sampledIds[r]] += 1 on the GPU.
   * `slots` is i32 [rows] (a SamplingBatch's `slots`); rows with slot -1 are skipped.
   */
  recordSampled(rec: Recorder, sampledIds: GpuTensor, slots: GpuTensor, rows = Math.min(sampledIds.length, slots.length)): void {
    if (sampledIds.dtype !== 'u32' || slots.dtype !== 'i32') {
      throw new TypeError(`recordSampled: expected u32 ids and i32 slots, got ${sampledIds.dtype} and ${slots.dtype}`);
    }
    if (rows > sampledIds.length || rows > slots.length) {
      throw new RangeError(`recordSampled: ${rows} rows but ${sampledIds.length} ids and ${slots.length} slots`);
    }
    const kernel = this.rt.kernel({ shader: 'token-counts', bindings: ['read', 'read', 'write'], params: true });
    rec.dispatch(kernel, [sampledIds, slots, this.table], params().u32(rows).u32(this.vocab).u32(this.slots), [Math.ceil(rows / 64)]);
  }

  /**
   * Queues generated tokens for a slot, added on the GPU by the next flushQueued: a
   * speculative draft row's token, known to be kept only after its step, when recording it
   * then costs a dispatch instead of rewriting the slot (a vocabulary's worth of words).
   */
  addGenerated(slot: number, tokenIds: readonly number[]): void {
    this.checkSlot(slot);
    for (const id of tokenIds) this.queued.push({ slot, token: this.checkToken(id) });
  }

  /** Forgets what is queued for a slot: its sequence ended or was preempted, and the slot is reset before its next use. */
  dropQueued(slot: number): void {
    this.queued = this.queued.filter((q) => q.slot !== slot);
  }

  /** Records the queued additions into `rec` (before the sampling that should see them) and empties the queue. */
  flushQueued(rec: Recorder): void {
    const n = this.queued.length;
    if (n === 0) return;
    if (!this.queueTensors || this.queueTensors.capacity < n) {
      if (this.queueTensors) for (const t of [this.queueTensors.ids, this.queueTensors.slots]) this.rt.destroyBuffer(t.buffer);
      const capacity = Math.max(64, 2 ** Math.ceil(Math.log2(n)));
      this.queueTensors = {
        ids: this.rt.tensor('u32', capacity, 'token-counts-queue-ids'),
        slots: this.rt.tensor('i32', capacity, 'token-counts-queue-slots'),
        capacity,
      };
    }
    const { ids, slots } = this.queueTensors;
    this.rt.write(
      ids,
      Uint32Array.from(this.queued, (q) => q.token),
    );
    this.rt.write(
      slots,
      Int32Array.from(this.queued, (q) => q.slot),
    );
    this.recordSampled(rec, ids, slots, n);
    this.queued = [];
  }

  /** Reads one slot back (tests and debugging). */
  async readSlot(slot: number): Promise<{ generated: Uint32Array; inPrompt: Uint8Array }> {
    this.checkSlot(slot);
    const words = (await this.rt.read(this.table, slot * this.vocab, this.vocab)) as Uint32Array;
    const generated = new Uint32Array(this.vocab);
    const inPrompt = new Uint8Array(this.vocab);
    for (let i = 0; i < this.vocab; i++) {
      generated[i] = words[i]! & GENERATED_MASK;
      inPrompt[i] = words[i]! >>> 31;
    }
    return { generated, inPrompt };
  }

  destroy(): void {
    this.rt.destroyBuffer(this.table.buffer);
    if (this.queueTensors) for (const t of [this.queueTensors.ids, this.queueTensors.slots]) this.rt.destroyBuffer(t.buffer);
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots) {
      throw new RangeError(`token counts slot ${slot} out of [0, ${this.slots})`);
    }
  }

  private checkToken(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocab) {
      throw new AutoGlmError('invalid_request', `token id ${id} out of the vocabulary [0, ${this.vocab})`);
    }
    return id;
  }
}
