/**
 * Activation scratch and per-step inputs, allocated once for the largest step the
 * scheduler may produce (maxRows token rows, maxSampleRows sampled rows) and reused every
 * step: nothing is allocated on the hot path.
 */
import type { AttentionBatch } from '../../kernels/attention.js';
import type { KernelRuntime } from '../../kernels/runtime.js';
import type { GpuTensor } from '../../kernels/tensor.js';
import type { GpuModelShape } from './gpu-model.js';

export interface StepBuffers {
  maxRows: number;
  maxSampleRows: number;
  hidden: GpuTensor;
  normed: GpuTensor;
  /** Rows of the fused q, k, v projection: q, then k, then v. */
  qkv: GpuTensor;
  attn: GpuTensor;
  blockOut: GpuTensor;
  gateUp: GpuTensor;
  act: GpuTensor;
  sampledHidden: GpuTensor;
  logits: GpuTensor;
  tokenIds: GpuTensor;
  positions: GpuTensor;
  slots: GpuTensor;
  sampleRows: GpuTensor;
  /** With LoRA adapters: each row's adapter slot, and the shrink's [rows, maxR] output. */
  lora?: { rowSlots: GpuTensor; t: GpuTensor };
  /**
   * Mixture-of-experts layers: the router's logits [rows, experts], each row's chosen
   * experts and routing weights [rows * topK], and each (row, expert) pair's gate/up
   * [rows * topK, 2 * inner] and activated [rows * topK, inner] rows.
   */
  moe?: {
    logits: GpuTensor;
    ids: GpuTensor;
    weights: GpuTensor;
    gateUp: GpuTensor;
    act: GpuTensor;
    /** The grouped path: each expert's pairs (moeGroup's offsets [experts + 1] and order [rows * topK]) and each pair's down projection [rows * topK, hidden]. */
    offsets: GpuTensor;
    order: GpuTensor;
    down: GpuTensor;
  };
}

/** What one step feeds the forward pass. */
export interface StepPlan {
  rows: number;
  sampleCount: number;
  blockSize: number;
  tokenIds: GpuTensor;
  positions: GpuTensor;
  slots: GpuTensor;
  sampleRows: GpuTensor;
  attention: AttentionBatch;
  /** Some row is left to the per-row LoRA kernels (buffers.lora.rowSlots is filled): they run. */
  lora: boolean;
  /** The adapter slots of those rows: a target no slot of theirs changes is skipped. */
  loraRowSlots: readonly number[];
  /** Runs of rows of one adapter long enough for the GEMM (their rowSlots say no adapter). */
  loraRuns: readonly LoraRun[];
}

/** Rows [start, start + count) of a step, all on the adapter in `slot`. */
export interface LoraRun {
  start: number;
  count: number;
  slot: number;
}

export function stepBufferBytes(shape: GpuModelShape, maxRows: number, maxSampleRows: number, loraWidth = 0): number {
  const s = shape;
  const perRow =
    2 * s.hiddenSize +
    s.numHeads * s.headDim * 2 +
    2 * s.numKvHeads * s.headDim +
    s.hiddenSize +
    3 * mlpWidth(s) +
    4 +
    (loraWidth > 0 ? loraWidth + 1 : 0) +
    (s.moe ? s.moe.experts + 3 * s.moe.topK + 3 * s.moe.topK * s.moe.inner + s.moe.topK * s.hiddenSize : 0);
  return 4 * (perRow * maxRows + maxSampleRows * (s.hiddenSize + s.vocabSize + 1) + (s.moe ? s.moe.experts + 1 : 0));
}

/** The widest dense MLP the gate/up and activation buffers serve: the dense layers', or a mixture's shared expert (Qwen2-57B-A14B's is the wider). */
function mlpWidth(s: GpuModelShape): number {
  return Math.max(s.intermediateSize, s.moe?.sharedInner ?? 0);
}

/** loraWidth: the widest LoRA shrink output (GpuLoras.maxR), 0 without adapters. */
export function createStepBuffers(
  rt: KernelRuntime,
  shape: GpuModelShape,
  maxRows: number,
  maxSampleRows: number,
  loraWidth = 0,
): StepBuffers {
  const s = shape;
  const f = (width: number, rows = maxRows, label = '') => rt.tensor('f32', Math.max(1, rows * width), `step.${label}`);
  const u = (n: number, label: string) => rt.tensor('u32', Math.max(4, n), `step.${label}`);
  return {
    maxRows,
    maxSampleRows,
    hidden: f(s.hiddenSize, maxRows, 'hidden'),
    normed: f(s.hiddenSize, maxRows, 'normed'),
    qkv: f((s.numHeads + 2 * s.numKvHeads) * s.headDim, maxRows, 'qkv'),
    attn: f(s.numHeads * s.headDim, maxRows, 'attn'),
    blockOut: f(s.hiddenSize, maxRows, 'block-out'),
    gateUp: f(2 * mlpWidth(s), maxRows, 'gate-up'),
    act: f(mlpWidth(s), maxRows, 'act'),
    sampledHidden: f(s.hiddenSize, maxSampleRows, 'sampled-hidden'),
    logits: f(s.vocabSize, maxSampleRows, 'logits'),
    tokenIds: u(maxRows, 'token-ids'),
    positions: u(maxRows, 'positions'),
    slots: u(maxRows, 'slots'),
    sampleRows: u(maxSampleRows, 'sample-rows'),
    ...(loraWidth > 0 ? { lora: { rowSlots: u(maxRows, 'lora-row-slots'), t: f(loraWidth, maxRows, 'lora-t') } } : {}),
    ...(s.moe
      ? {
          moe: {
            logits: f(s.moe.experts, maxRows, 'moe-logits'),
            ids: u(maxRows * s.moe.topK, 'moe-ids'),
            weights: f(s.moe.topK, maxRows, 'moe-weights'),
            gateUp: f(2 * s.moe.inner, maxRows * s.moe.topK, 'moe-gate-up'),
            act: f(s.moe.inner, maxRows * s.moe.topK, 'moe-act'),
            offsets: u(s.moe.experts + 1, 'moe-offsets'),
            order: u(maxRows * s.moe.topK, 'moe-order'),
            down: f(s.hiddenSize, maxRows * s.moe.topK, 'moe-down'),
          },
        }
      : {}),
  };
}

export function destroyStepBuffers(rt: KernelRuntime, b: StepBuffers): void {
  const tensors = [...Object.values(b), ...Object.values(b.lora ?? {}), ...Object.values(b.moe ?? {})];
  for (const t of tensors) if (typeof t === 'object' && t && 'buffer' in t) rt.destroyBuffer((t as GpuTensor).buffer);
}
