/**
 * The model as the GPU sees it: uploaded weights plus the shape facts the forward pass
 * needs. Built once at load by `uploadModel` (weights.ts); the forward pass reads only this.
 */
import type { MatmulWeight } from '../../kernels/matmul.js';
import type { MoeExpertWeight } from '../../kernels/moe-matmul.js';
import type { MoeRouting } from '../../kernels/moe-route.js';
import type { EmbeddingTable } from '../../kernels/embedding.js';
import type { GpuTensor } from '../../kernels/tensor.js';
import type { GpuLoras } from '../lora/lora-weights.js';

export interface GpuLayer {
  /** 0 = full attention; else this layer's sliding window in tokens. */
  slidingWindow: number;
  /** f32 [rotaryDim / 2]: this layer's RoPE inverse frequencies, scaling applied (Gemma 3's sliding layers have their own). */
  invFreq: GpuTensor;
  /** Pre-attention norm weight, f32 [hidden]. */
  inputNorm: GpuTensor;
  /** q, k and v fused: [(numHeads + 2 * numKvHeads) * headDim, hidden], q first, then k, then v. */
  qkv: MatmulWeight;
  /** Qwen3: per-head RMSNorm weights on q and k, f32 [headDim]. */
  qNorm?: GpuTensor;
  kNorm?: GpuTensor;
  o: MatmulWeight;
  /** GLM-4-0414, Gemma 2/3: norm of the attention output before the residual add. */
  postAttnOutNorm?: GpuTensor;
  /** Pre-MLP norm weight. */
  preMlpNorm: GpuTensor;
  /** gate and up fused: [2 * intermediate, hidden], gate first (absent in a mixture-of-experts layer). */
  gateUp?: MatmulWeight;
  down?: MatmulWeight;
  /** A mixture-of-experts MLP in place of gateUp and down. */
  moe?: GpuMoe;
  /** GLM-4-0414, Gemma 2/3: norm of the MLP output before the residual add. */
  postMlpOutNorm?: GpuTensor;
}

/** A mixture-of-experts MLP (ModelSpec.moe) on the GPU. */
export interface GpuMoe {
  /** [experts, hidden]: the router's logits. */
  router: MatmulWeight;
  /** Each expert's gate and up fused, [2 * inner, hidden], gate first. */
  gateUp: MoeExpertWeight;
  /** Each expert's down projection, [hidden, inner]. */
  down: MoeExpertWeight;
  experts: number;
  topK: number;
  /** Each expert's MLP width. */
  inner: number;
  /** How the router picks and weights each token's experts (model-spec.ts MoeSpec): Qwen's softmax, GLM-4.5's sigmoid with its choice bias (f32 [experts]). */
  routing: MoeRouting;
  /** The shared expert every token runs (Qwen2-MoE, GLM-4.5). */
  shared?: GpuSharedExpert;
}

/** A mixture-of-experts layer's shared expert: a dense gated MLP, Qwen2-MoE's scaled per token by a sigmoid gate. */
export interface GpuSharedExpert {
  /** [2 * inner, hidden], gate first. */
  gateUp: MatmulWeight;
  down: MatmulWeight;
  inner: number;
  /** Qwen2-MoE: f32 [hidden], the output scaled by sigmoid(gate . x). */
  gate?: GpuTensor;
}

export interface GpuModelShape {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  normEps: number;
  /** (1 + w) RMSNorm form. */
  normOnePlus: boolean;
  ropeLayout: 'half' | 'interleaved';
  rotaryDim: number;
  activation: 'silu' | 'gelu_tanh';
  /** Multiplies q.k in attention. */
  attentionScale: number;
  /** 0 = none; else attention scores are soft-capped at this (Gemma 2). */
  attentionSoftcap: number;
  /** 0 = none; else logits are soft-capped at this (Gemma 2). */
  finalLogitSoftcap: number;
  /** Mixture-of-experts layers' sizes (their step buffers; sharedInner 0 without a shared expert); null for dense models. */
  moe: { experts: number; topK: number; inner: number; sharedInner: number } | null;
}

export interface GpuModel {
  shape: GpuModelShape;
  embedding: EmbeddingTable;
  layers: GpuLayer[];
  finalNorm: GpuTensor;
  lmHead: MatmulWeight;
  /** Bytes of weights read per decode step of one token (for the bandwidth bound): of a mixture of experts, its topK experts' share. */
  weightBytes: number;
  /**
   * Bytes the model occupies on the device: weightBytes plus what a decode step does not
   * read whole (the embedding table, of which it gathers a few rows; RoPE frequencies).
   * What the KV budget's default subtracts from the device's memory.
   */
  residentBytes: number;
  /** LoRA adapter slots (EngineOptions.maxLoras); a step's rows pick theirs. */
  loras?: GpuLoras;
}
