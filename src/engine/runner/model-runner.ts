/**
 * Runs engine steps on the GPU: turns a batch of scheduled sequences into the forward
 * pass's inputs, records forward + sampling into one command buffer, submits once, and
 * reads back only the sampled token ids (and logprobs when asked).
 */
import { prepareAttentionBatch, type AttentionBatch } from '../../kernels/attention.js';
import { addLogitBias, prepareLogitBias, type LogitBiasBatch, type RowLogitBias } from '../../kernels/logit-bias.js';
import { createKvCache, type KvCache } from '../../kernels/kv-write.js';
import type { KernelRuntime } from '../../kernels/runtime.js';
import {
  GREEDY_SAMPLING_ROW,
  createSampleOutput,
  prepareSampling,
  readSamples,
  sample,
  type SampleOutput,
  type SampleResult,
  type SamplingBatch,
  type SamplingRow,
} from '../../kernels/sampling.js';
import { LORA_NO_ADAPTER } from '../../kernels/lora.js';
import { TokenCounts } from '../../kernels/token-counts.js';
import { applyTokenMasks, prepareTokenMasks, type TokenMaskBatch } from '../../kernels/token-mask.js';
import { recordForward } from './forward.js';
import type { GpuModel } from './gpu-model.js';
import { createStepBuffers, destroyStepBuffers, type LoraRun, type StepBuffers } from './step-buffers.js';

/**
 * A sequence's rows in one step from which its adapter goes through the GEMM (two matmuls
 * per adapted projection) rather than the per-row LoRA kernels. On lavapipe a 128-row prompt
 * chunk paid 1.33x the base model's prefill through the per-row kernels, which re-read the
 * adapter for every row; decode rows (one per sequence, or a few with drafts) stay per-row,
 * where many sequences on different adapters share two dispatches.
 */
export const LORA_GEMM_MIN_ROWS = 16;

/** One sequence's share of a step. */
export interface RunnerSequence {
  /** Tokens whose KV this step computes. */
  tokenIds: readonly number[];
  /** Absolute position of tokenIds[0]. */
  startPosition: number;
  /** Block ids covering [0, startPosition + tokenIds.length). */
  blockTable: readonly number[];
  /** Present when the step's last row (or last sampledRows rows) of this sequence is sampled (positions filled in here). */
  sampling?: Omit<SamplingRow, 'position'>;
  /**
   * With sampling: how many of the last rows are sampled, each with the same parameters at
   * its own position (speculative decoding's drafts); default 1.
   */
  sampledRows?: number;
  /** logit_bias of each sampled row, in row order (a draft row's bans may differ: min_tokens); absent entries: none. */
  logitBiases?: readonly (RowLogitBias | undefined)[] | undefined;
  /**
   * Tokens each sampled row may draw (response_format), in row order, a bitmask of
   * ceil(vocab / 32) words; absent entries: any.
   */
  tokenMasks?: readonly (Uint32Array | undefined)[] | undefined;
  /**
   * Prompt logprobs: rows 0 .. targets.length - 1 of this sequence are scored, row j with
   * the logprob of targets[j] (the prompt token after it) and its top alternatives, from the
   * raw model distribution.
   */
  score?: { targets: readonly number[]; topLogprobs: number } | undefined;
  /** The LoRA adapter slot (of model.loras) every row of this sequence runs with; absent: the base model. */
  adapter?: number | undefined;
}

export interface RunnerOptions {
  numBlocks: number;
  blockSize: number;
  maxRows: number;
  maxSampleRows: number;
  /** Scored prompt rows per step at most, beyond the sampled ones (default 0: no prompt logprobs). */
  maxScoreRows?: number;
  /** Sequences tracked for penalties at once. */
  countSlots: number;
  kvDType: 'f16' | 'f32';
  /** RMSNorms run inside the matmuls they feed where the model allows (forward.ts). */
  foldNorms: boolean;
}

export interface StepResult extends SampleResult {
  /** Index into the step's sequences of each sampled row (a sequence's rows adjacent, in order). */
  sequenceIndex: number[];
  /**
   * The scored prompt rows, which follow the sampled ones in the result's arrays (row
   * sequenceIndex.length + i): the sequence (index into the step's) and its row.
   */
  scored: { sequence: number; row: number }[];
}

export class ModelRunner {
  readonly kv: KvCache[];
  private readonly buffers: StepBuffers;
  private readonly sampleOut: SampleOutput;
  readonly counts: TokenCounts;
  private attentionBatch: AttentionBatch | undefined;
  private samplingBatch: SamplingBatch | undefined;
  private logitBiasBatch: LogitBiasBatch | null = null;
  private tokenMaskBatch: TokenMaskBatch | null = null;

  constructor(
    readonly rt: KernelRuntime,
    readonly model: GpuModel,
    readonly options: RunnerOptions,
  ) {
    const s = model.shape;
    this.kv = model.layers.map((_, l) =>
      createKvCache(rt, {
        numBlocks: options.numBlocks,
        blockSize: options.blockSize,
        nKvHeads: s.numKvHeads,
        headDim: s.headDim,
        dtype: options.kvDType,
        label: `kv.${l}`,
      }),
    );
    const logitRows = options.maxSampleRows + (options.maxScoreRows ?? 0);
    this.buffers = createStepBuffers(rt, s, options.maxRows, logitRows, model.loras?.maxR ?? 0);
    this.sampleOut = createSampleOutput(rt, logitRows);
    this.counts = TokenCounts.create(rt, { slots: options.countSlots, vocab: s.vocabSize });
  }

  /** Runs one step; resolves with one sampled token per sequence that asked for sampling. */
  async step(seqs: readonly RunnerSequence[]): Promise<StepResult | null> {
    const prepared = this.prepare(seqs, false);
    if (!prepared) return null;
    const { rec, samplingRows, sequenceIndex, scored, logitBiases, tokenMasks } = prepared;
    if (samplingRows.length === 0) {
      await rec.submit();
      return null;
    }
    const { rt, buffers } = this;
    const batch = (this.samplingBatch = prepareSampling(rt, samplingRows, this.samplingBatch));
    const vocab = this.model.shape.vocabSize;
    const bias = (this.logitBiasBatch = prepareLogitBias(rt, logitBiases, vocab, this.logitBiasBatch));
    if (bias) addLogitBias(rt, rec, buffers.logits, vocab, bias);
    // after the bias: a mask is the last word on which tokens may be drawn
    const masks = (this.tokenMaskBatch = prepareTokenMasks(rt, tokenMasks, vocab, this.tokenMaskBatch));
    if (masks) applyTokenMasks(rt, rec, buffers.logits, vocab, masks);
    // drafts kept last step are counted before this step's penalties read the counts
    this.counts.flushQueued(rec);
    sample(rt, rec, { logits: buffers.logits, vocab, batch, counts: this.counts, out: this.sampleOut });
    if (batch.maxSlot >= 0) this.counts.recordSampled(rec, this.sampleOut.tokenIds, batch.slots, batch.rows);
    rec.submitSync();
    const result = await readSamples(rt, this.sampleOut, batch);
    return { ...result, sequenceIndex, scored };
  }

  /**
   * Logits of every row of the step, [rows, vocab] (prompt scoring, and the tests that
   * compare the GPU forward pass with the float64 reference at every position).
   */
  async logits(seqs: readonly RunnerSequence[]): Promise<Float32Array> {
    const prepared = this.prepare(seqs, true);
    if (!prepared) return new Float32Array(0);
    await prepared.rec.submit();
    return this.rt.readFloats(this.buffers.logits, 0, prepared.rows * this.model.shape.vocabSize);
  }

  /** Uploads a step's inputs and records its forward pass (not yet submitted). */
  private prepare(seqs: readonly RunnerSequence[], allRows: boolean) {
    const { rt, options, buffers } = this;
    const s = this.model.shape;
    let rows = 0;
    for (const q of seqs) rows += q.tokenIds.length;
    if (rows === 0) return null;
    if (rows > options.maxRows) throw new RangeError(`step of ${rows} rows exceeds maxRows ${options.maxRows}`);

    const tokenIds = new Uint32Array(rows);
    const positions = new Uint32Array(rows);
    const slots = new Uint32Array(rows);
    const loraSlots = this.model.loras ? new Uint32Array(rows).fill(LORA_NO_ADAPTER) : null;
    let lora = false;
    const loraRowSlots = new Set<number>();
    const loraRuns: LoraRun[] = [];
    const sampleRows: number[] = [];
    const sequenceIndex: number[] = [];
    const samplingRows: SamplingRow[] = [];
    const logitBiases: (RowLogitBias | undefined)[] = [];
    const tokenMasks: (Uint32Array | undefined)[] = [];
    // scored prompt rows go after every sampled row, so sampled row i stays result row i
    const scoreRows: number[] = [];
    const scored: { sequence: number; row: number }[] = [];
    const scoreSampling: SamplingRow[] = [];
    const attnSeqs = [];
    let row = 0;
    for (let i = 0; i < seqs.length; i++) {
      const q = seqs[i]!;
      const qStart = row;
      if (q.adapter !== undefined) {
        const count = this.model.loras?.capacity ?? 0;
        if (!(Number.isInteger(q.adapter) && q.adapter >= 0 && q.adapter < count))
          throw new RangeError(`sequence ${i}: LoRA adapter slot ${q.adapter} of ${count}`);
        if (q.tokenIds.length >= LORA_GEMM_MIN_ROWS) loraRuns.push({ start: row, count: q.tokenIds.length, slot: q.adapter });
        else {
          loraSlots!.fill(q.adapter, row, row + q.tokenIds.length);
          loraRowSlots.add(q.adapter);
          lora = true;
        }
      }
      for (let j = 0; j < q.tokenIds.length; j++, row++) {
        const pos = q.startPosition + j;
        const tok = q.tokenIds[j]!;
        if (!(tok >= 0 && tok < s.vocabSize)) throw new RangeError(`token id ${tok} outside the vocabulary of ${s.vocabSize}`);
        tokenIds[row] = tok;
        positions[row] = pos;
        slots[row] = q.blockTable[Math.floor(pos / options.blockSize)]! * options.blockSize + (pos % options.blockSize);
        if (allRows) sampleRows.push(row);
        else if (q.score && j < q.score.targets.length) {
          scoreRows.push(row);
          scored.push({ sequence: i, row: j });
          // raw logprobs of the next prompt token: a forced greedy row with nothing else on
          scoreSampling.push({
            ...GREEDY_SAMPLING_ROW,
            position: pos,
            logprobs: true,
            topLogprobs: q.score.topLogprobs,
            forcedToken: q.score.targets[j]!,
          });
        }
      }
      const kvLen = q.startPosition + q.tokenIds.length;
      attnSeqs.push({ qStart, qLen: q.tokenIds.length, kvLen, blockTable: q.blockTable });
      if (q.sampling && !allRows) {
        const n = q.sampledRows ?? 1;
        if (!(Number.isInteger(n) && n >= 1 && n <= q.tokenIds.length))
          throw new RangeError(`sequence ${i}: ${n} sampled rows of ${q.tokenIds.length}`);
        for (const [name, list] of [
          ['logit biases', q.logitBiases],
          ['token masks', q.tokenMasks],
        ] as const) {
          if (list && list.length !== n) throw new RangeError(`sequence ${i}: ${list.length} ${name} for ${n} sampled rows`);
        }
        for (let back = n; back >= 1; back--) {
          sampleRows.push(row - back);
          sequenceIndex.push(i);
          // the random draw of the token at the absolute position after the row's; a draft
          // row's penalties count the drafts up to its own, which the slot does not hold, and
          // its token is not counted (kept or not, the engine decides after the step)
          const drafted = n - back;
          const draft = drafted > 0 && q.sampling.countsSlot >= 0;
          const first = q.tokenIds.length - n + 1;
          samplingRows.push({
            ...q.sampling,
            position: kvLen - back + 1,
            ...(draft ? { pendingTokens: q.tokenIds.slice(first, first + drafted), recordCount: false } : {}),
          });
          logitBiases.push(q.logitBiases?.[drafted]);
          tokenMasks.push(q.tokenMasks?.[drafted]);
        }
      }
    }
    // logits() returns every row, into the logits rows that scoring uses otherwise
    const maxSampled = options.maxSampleRows + (allRows ? (options.maxScoreRows ?? 0) : 0);
    if (sampleRows.length > maxSampled) throw new RangeError(`${sampleRows.length} sampled rows exceed ${maxSampled}`);
    if (scoreRows.length > (options.maxScoreRows ?? 0))
      throw new RangeError(`${scoreRows.length} scored prompt rows exceed ${options.maxScoreRows ?? 0}`);
    // no bias or mask for them: those lists stop at the sampled rows
    sampleRows.push(...scoreRows);
    samplingRows.push(...scoreSampling);

    rt.write(buffers.tokenIds, tokenIds);
    rt.write(buffers.positions, positions);
    rt.write(buffers.slots, slots);
    if (lora) rt.write(buffers.lora!.rowSlots, loraSlots!);
    if (sampleRows.length > 0) rt.write(buffers.sampleRows, Uint32Array.from(sampleRows));
    this.attentionBatch = prepareAttentionBatch(rt, {
      seqs: attnSeqs,
      blockSize: options.blockSize,
      nHeads: s.numHeads,
      nKvHeads: s.numKvHeads,
      headDim: s.headDim,
      numBlocks: options.numBlocks,
      reuse: this.attentionBatch,
    });

    const rec = rt.recorder();
    recordForward(
      rt,
      rec,
      this.model,
      this.kv,
      buffers,
      {
        rows,
        sampleCount: sampleRows.length,
        blockSize: options.blockSize,
        tokenIds: buffers.tokenIds,
        positions: buffers.positions,
        slots: buffers.slots,
        sampleRows: buffers.sampleRows,
        attention: this.attentionBatch,
        lora,
        loraRowSlots: [...loraRowSlots],
        loraRuns,
      },
      { foldNorms: options.foldNorms },
    );
    return { rec, rows, samplingRows, sequenceIndex, scored, logitBiases, tokenMasks };
  }

  destroy(): void {
    destroyStepBuffers(this.rt, this.buffers);
    this.attentionBatch?.destroy();
    this.counts.destroy();
    for (const c of this.kv) {
      this.rt.destroyBuffer(c.k.buffer);
      this.rt.destroyBuffer(c.v.buffer);
    }
  }
}
