/**
 * Static GPU sizing: how much memory a model's weights take in a dtype, how many bytes of
 * KV cache each token costs, and how many sequences of a given context fit in a memory
 * budget; plus a bandwidth bound on decode latency when the card's bandwidth is given.
 * Pure arithmetic over a ModelSpec, following the engine's conventions: weights and KV
 * cache both f16 (shader-f16) or both f32, or int8 matmul weights (--weight-dtype int8)
 * with the rest and the KV cache f16; the cache paged in blocks of `blockSize` tokens per
 * layer as one K and one V tensor of [kvHeads x headDim] per token, activations f32.
 */
import { loraSlotBytes } from '../engine/lora/lora-weights.js';
import { INT8_GROUP_SIZE } from '../kernels/int8-quant.js';
import { layerProjections, parameterCount, type ModelSpec, type TensorRef } from '../engine/model/index.js';

export type WeightDtype = 'f16' | 'f32' | 'int8';

/** Bytes per element of the KV cache, and of the weights that are not int8 matmul weights. */
export const DTYPE_BYTES: Record<WeightDtype, number> = { f16: 2, f32: 4, int8: 2 };

/** The matmul weights the engine quantizes for int8: every layer's projections (experts and routers too) and the LM head (the embedding when tied). */
function matmulWeights(spec: ModelSpec): TensorRef[] {
  const out: TensorRef[] = [];
  for (const l of spec.weights.layers) {
    // the router is a matmul too; Qwen2-MoE's one-row shared expert gate stays a float
    // vector, as GLM-4.5's choice bias
    out.push(...layerProjections(l));
    if (l.router) out.push(l.router);
  }
  out.push(spec.weights.lmHead ?? spec.weights.embed);
  return out;
}

const elements = (ref: TensorRef): number => ref.shape.reduce((a, b) => a * b, 1);

/**
 * Device bytes of the weights: every parameter at the dtype's size; for int8 the matmul
 * weights at a byte each plus a 4-byte scale per row and group of INT8_GROUP_SIZE, the
 * embedding, norms and biases f16, and a tied LM head counted twice (the engine keeps the
 * embedding's rows for the gather and an int8 copy for the head).
 */
export function weightBytes(spec: ModelSpec, dtype: WeightDtype): number {
  const parameters = parameterCount(spec);
  if (dtype !== 'int8') return parameters * DTYPE_BYTES[dtype];
  let int8Bytes = 0;
  let int8Params = 0;
  for (const ref of matmulWeights(spec)) {
    const [N, K] = [ref.shape[0]!, ref.shape[1]!];
    int8Bytes += N * (K + 4 * Math.ceil(K / INT8_GROUP_SIZE));
    if (ref !== spec.weights.embed) int8Params += elements(ref);
  }
  return int8Bytes + (parameters - int8Params) * DTYPE_BYTES.f16;
}

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
  /** LoRA adapter slots kept beside the weights (the engine's maxLoras, maxLoraRank). */
  lora?: { slots: number; rank: number };
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
  /** LoRA slots (SizingOptions.lora), every projection targeted; 0 without. */
  loraBytes: number;
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
  const moe = spec.moe;
  // a mixture-of-experts layer's router logits, routing, and each chosen expert's gate/up and activation
  const moeRow = moe ? moe.numExperts + 2 * moe.topK + 3 * moe.topK * moe.expertIntermediateSize : 0;
  // the dense MLP's buffers also serve a shared expert, which may be the wider
  const mlpWidth = Math.max(spec.intermediateSize, moe?.sharedIntermediateSize ?? 0);
  const perRow = 2 * spec.hiddenSize + qkv + spec.numHeads * spec.headDim + 2 * mlpWidth + moeRow;
  return 4 * (maxBatchTokens * perRow + maxBatchSequences * spec.vocabSize);
}

export function staticSizing(spec: ModelSpec, options: SizingOptions): StaticSizing {
  const blockSize = options.blockSize ?? 16;
  const utilization = options.memoryUtilization ?? 0.9;
  const parameters = parameterCount(spec);
  const weightBytesTotal = weightBytes(spec, options.dtype);
  const perToken = kvBytesPerToken(spec, options.dtype);
  const usableBytes = Math.floor(options.memoryBytes * utilization);
  const act = activationBytes(spec, options.maxBatchTokens ?? 2048, options.maxBatchSequences ?? 256);
  // the engine keeps the slots' GEMM copies in f16 unless everything is f32 (forceF32)
  const loraBytes = options.lora ? loraSlotBytes(spec, options.lora.slots, options.lora.rank, options.dtype === 'f32' ? 'f32' : 'f16') : 0;
  const kvBudgetBytes = Math.max(0, usableBytes - weightBytesTotal - act - loraBytes);
  const kvBlocks = Math.floor(kvBudgetBytes / (perToken * blockSize));
  const contexts = (options.contextLengths ?? defaultContexts(spec.contextLength)).map((contextTokens): ContextFit => {
    const kvBytesPerSequence = Math.ceil(contextTokens / blockSize) * blockSize * perToken;
    const maxSequences = Math.floor((kvBlocks * blockSize * perToken) / kvBytesPerSequence);
    const bw = options.bandwidthBytesPerS;
    // Each decode step reads every weight once and each sequence's KV once.
    const tpotS = bw && maxSequences > 0 ? (weightBytesTotal + maxSequences * contextTokens * perToken) / bw : null;
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
    weightBytes: weightBytesTotal,
    kvBytesPerToken: perToken,
    memoryBytes: options.memoryBytes,
    usableBytes,
    activationBytes: act,
    loraBytes,
    kvBudgetBytes,
    blockSize,
    kvBlocks,
    kvTokenCapacity: kvBlocks * blockSize,
    fits: usableBytes > weightBytesTotal + act + loraBytes,
    contexts,
  };
}

function defaultContexts(contextLength: number): number[] {
  const out: number[] = [];
  for (let c = 512; c < contextLength; c *= 2) out.push(c);
  out.push(contextLength);
  return out;
}
