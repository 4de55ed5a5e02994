/**
 * Static GPU sizing: how much memory a model's weights take in a dtype, how many bytes of
 * KV cache each token costs, and how many sequences of a given context fit in a memory
 * budget; plus a bandwidth bound on decode latency when the card's bandwidth is given.
 * Pure arithmetic over a ModelSpec, following the engine's conventions: weights and KV
 * cache both f16 (shader-f16) or both f32, the cache paged in blocks of `blockSize` tokens
 * per layer as one K and one V tensor of [kvHeads x headDim] per token, activations f32.
 */
import { parameterCount, type ModelSpec } from '../engine/model/index.js';

export type WeightDtype = 'f16' | 'f32';

export const DTYPE_BYTES: Record<WeightDtype, number> = { f16: 2, f32: 4 };

export interface SizingOptions {
  /** Device memory in bytes. */
  memoryBytes: number;
  dtype: WeightDtype;
  /** Fraction of device memory the engine may use (vLLM's gpu_memory_utilization); default 0.9. */
  memoryUtilization?: number;
  /** Tokens per KV block (default 16, the engine's default). */
  blockSize?: number;
  /** Rows of one engine step, for the activation working set (default 2048). */
  maxBatchTokens?: number;
  /** Sequences decoded together, for the logits buffer (default 256). */
  maxBatchSequences?: number;
  /** Context lengths to tabulate (default: powers of two from 512 up to the model's context). */
  contextLengths?: number[];
  /** Memory bandwidth in bytes/s: adds a decode TPOT lower bound per row. */
  bandwidthBytesPerS?: number;
}

export interface ContextFit {
  contextTokens: number;
  /** KV bytes one sequence of this length holds (rounded up to whole blocks). */
  kvBytesPerSequence: number;
  /** Sequences of this length that fit in the KV budget at once. */
  maxSequences: number;
  /** Decode time per output token at that batch if bound by reading weights + KV once per step, ms. */
  tpotLowerBoundMs: number | null;
  /** Output tokens/s that bound implies (maxSequences / TPOT). */
  decodeTokensPerSUpperBound: number | null;
}

export interface StaticSizing {
  dtype: WeightDtype;
  parameters: number;
  weightBytes: number;
  /** 2 (K and V) x layers x kvHeads x headDim x bytes. */
  kvBytesPerToken: number;
  memoryBytes: number;
  usableBytes: number;
  /** Estimated f32 working set of one step (activations and logits). */
  activationBytes: number;
  kvBudgetBytes: number;
  blockSize: number;
  kvBlocks: number;
  /** Tokens the KV budget holds over all sequences. */
  kvTokenCapacity: number;
  /** False when the weights and working set alone exceed the usable memory. */
  fits: boolean;
  contexts: ContextFit[];
}

export function kvBytesPerToken(spec: ModelSpec, dtype: WeightDtype): number {
  return 2 * spec.numLayers * spec.numKvHeads * spec.headDim * DTYPE_BYTES[dtype];
}

/** f32 buffers one step needs: the residual stream, normed input, q/k/v, attention output, gate|up, and logits per sequence. */
export function activationBytes(spec: ModelSpec, maxBatchTokens: number, maxBatchSequences: number): number {
  const qkv = (spec.numHeads + 2 * spec.numKvHeads) * spec.headDim;
  const perRow = 2 * spec.hiddenSize + qkv + spec.numHeads * spec.headDim + 2 * spec.intermediateSize;
  return 4 * (maxBatchTokens * perRow + maxBatchSequences * spec.vocabSize);
}

export function staticSizing(spec: ModelSpec, options: SizingOptions): StaticSizing {
  const blockSize = options.blockSize ?? 16;
  const utilization = options.memoryUtilization ?? 0.9;
  const parameters = parameterCount(spec);
  const weightBytes = parameters * DTYPE_BYTES[options.dtype];
  const perToken = kvBytesPerToken(spec, options.dtype);
  const usableBytes = Math.floor(options.memoryBytes * utilization);
  const act = activationBytes(spec, options.maxBatchTokens ?? 2048, options.maxBatchSequences ?? 256);
  const kvBudgetBytes = Math.max(0, usableBytes - weightBytes - act);
  const kvBlocks = Math.floor(kvBudgetBytes / (perToken * blockSize));
  const contexts = (options.contextLengths ?? defaultContexts(spec.contextLength)).map((contextTokens): ContextFit => {
    const kvBytesPerSequence = Math.ceil(contextTokens / blockSize) * blockSize * perToken;
    const maxSequences = Math.floor((kvBlocks * blockSize * perToken) / kvBytesPerSequence);
    const bw = options.bandwidthBytesPerS;
    // Each decode step reads every weight once and each sequence's KV once.
    const tpotS = bw && maxSequences > 0 ? (weightBytes + maxSequences * contextTokens * perToken) / bw : null;
    return {
      contextTokens,
      kvBytesPerSequence,
      maxSequences,
      tpotLowerBoundMs: tpotS === null ? null : tpotS * 1000,
      decodeTokensPerSUpperBound: tpotS === null ? null : maxSequences / tpotS,
    };
  });
  return {
    dtype: options.dtype,
    parameters,
    weightBytes,
    kvBytesPerToken: perToken,
    memoryBytes: options.memoryBytes,
    usableBytes,
    activationBytes: act,
    kvBudgetBytes,
    blockSize,
    kvBlocks,
    kvTokenCapacity: kvBlocks * blockSize,
    fits: usableBytes > weightBytes + act,
    contexts,
  };
}

function defaultContexts(contextLength: number): number[] {
  const out: number[] = [];
  for (let c = 512; c < contextLength; c *= 2) out.push(c);
  out.push(contextLength);
  return out;
}
