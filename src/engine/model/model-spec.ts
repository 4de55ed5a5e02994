/**
 * The model as data: every architectural difference the forward pass must honour is a
 * field here, so the forward pass never branches on the architecture's name.
 * Built from config.json by `modelSpecFromConfig` (config.ts).
 */

export const SUPPORTED_ARCHITECTURES = [
  'llama',
  'mistral',
  'qwen2',
  'qwen3',
  'qwen2_moe',
  'qwen3_moe',
  'glm',
  'glm4',
  'glm4_moe',
  'gemma',
  'gemma2',
  'gemma3_text',
] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

export type RopeScaling =
  | { type: 'none' }
  /** Positions divided by `factor` (inv_freq / factor). */
  | { type: 'linear'; factor: number }
  /** Llama 3.x: low frequencies divided by `factor`, high ones kept, a smooth ramp between. */
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface RopeSpec {
  /**
   * 'half' (Llama, Mistral, Qwen): dimension i pairs with i + rotaryDim/2 (rotate_half).
   * 'interleaved' (GLM, GLM-4-0414): dimension 2i pairs with 2i + 1.
   * Pair i rotates by position * invFreq[i] in both layouts.
   */
  layout: 'half' | 'interleaved';
  /** Leading dimensions of each head that rotate (headDim * partial_rotary_factor); the rest pass through. */
  rotaryDim: number;
  theta: number;
  scaling: RopeScaling;
}

export interface NormSpec {
  /** RMSNorm epsilon (added to the mean square before the rsqrt). */
  eps: number;
  /** Gemma's x * (1 + w) (weights stored as offsets from 1); false elsewhere (plain x * w). */
  onePlus: boolean;
}

/**
 * A sparse mixture-of-experts MLP: a router picks each token's topK experts, and the MLP's
 * output is the routing-weighted sum of those experts' gated MLPs, plus a shared expert
 * every token runs where the model has one.
 * - Qwen2/3-MoE: softmax probabilities over all experts, renormalised over the chosen
 *   ones when normalizeTopK; Qwen2-MoE adds a shared expert scaled per token by
 *   sigmoid(x . shared_expert_gate).
 * - GLM-4.5 (DeepSeek-V3's router): each expert's score is sigmoid(logit); the choice adds
 *   a learned per-expert bias (e_score_correction_bias) and may be limited to the best
 *   groups of experts; the weights are the unbiased scores, renormalised, times
 *   routedScale; a shared expert (n_shared_experts of them, as one MLP) always added.
 */
export interface MoeSpec {
  numExperts: number;
  topK: number;
  /** Each expert's MLP width (moe_intermediate_size); dense layers keep intermediateSize. */
  expertIntermediateSize: number;
  normalizeTopK: boolean;
  /** Per layer: whether its MLP is the mixture (mlp_only_layers, decoder_sparse_step or first_k_dense_replace decide). */
  layers: boolean[];
  scoring: 'softmax' | 'sigmoid';
  /** The router holds e_score_correction_bias, added to the scores for the choice only. */
  choiceBias: boolean;
  /** Group-limited choice (n_group, topk_group): only experts of the topkGroup best of `groups` contiguous groups; 1 and 1 = no limit. */
  groups: number;
  topkGroup: number;
  /** Multiplies the routing weights (routed_scaling_factor; 1 for Qwen). */
  routedScale: number;
  /** The shared expert's MLP width; 0 = none. */
  sharedIntermediateSize: number;
  /** Qwen2-MoE: the shared expert's output is scaled by sigmoid(x . shared_expert_gate). */
  sharedGate: boolean;
}

/**
 * Block-quantized FP8 weights (quantization_config quant_method "fp8" with
 * weight_block_size, as DeepSeek-V3, Qwen3-*-FP8 and GLM-4.5-FP8 publish): a projection
 * weight X.weight is F8_E4M3 [N, K] beside X.weight_scale_inv [ceil(N/bn), ceil(K/bk)],
 * and its value is fp8 * scale_inv of its block. Dequantized when read (block-fp8.ts),
 * so everything downstream sees float weights.
 */
export interface Fp8BlockQuantization {
  method: 'fp8';
  /** [bn, bk]: rows and columns of the weight per scale. */
  blockSize: [number, number];
}

/** One tensor the checkpoint must hold: its safetensors name and row-major shape. */
export interface TensorRef {
  name: string;
  shape: number[];
}

export interface LayerWeights {
  /** Pre-attention RMSNorm, [hidden]. */
  inputNorm: TensorRef;
  /** [numHeads * headDim, hidden]. */
  qProj: TensorRef;
  /** [numKvHeads * headDim, hidden]. */
  kProj: TensorRef;
  vProj: TensorRef;
  /** Present when spec.qkvBias. */
  qBias?: TensorRef;
  kBias?: TensorRef;
  vBias?: TensorRef;
  /** Qwen3: RMSNorm over each head of q and k, [headDim], applied before RoPE. */
  qNorm?: TensorRef;
  kNorm?: TensorRef;
  /** [hidden, numHeads * headDim]. */
  oProj: TensorRef;
  /** Present when spec.oBias, [hidden]. */
  oBias?: TensorRef;
  /**
   * sandwichNorms: RMSNorm of the attention output before the residual add (GLM-4-0414's
   * post_self_attn_layernorm, Gemma 2/3's post_attention_layernorm).
   */
  postSelfAttnNorm?: TensorRef;
  /**
   * Pre-MLP RMSNorm, [hidden]: HF's "post_attention_layernorm" despite its place in the
   * Llama family, Gemma 2/3's "pre_feedforward_layernorm".
   */
  postAttentionNorm: TensorRef;
  /** Separate gate and up, [intermediate, hidden] each (when !fusedGateUp); absent in a mixture-of-experts layer. */
  gateProj?: TensorRef;
  upProj?: TensorRef;
  /** GLM: [2 * intermediate, hidden], gate rows first then up rows (when fusedGateUp). */
  gateUpProj?: TensorRef;
  /** [hidden, intermediate]; absent in a mixture-of-experts layer. */
  downProj?: TensorRef;
  /** Mixture-of-experts layer (spec.moe): the router, [experts, hidden]. */
  router?: TensorRef;
  /** GLM-4.5's router: e_score_correction_bias, [experts]. */
  routerBias?: TensorRef;
  /** Mixture-of-experts layer: each expert's gate and up, [expertIntermediate, hidden], and down, [hidden, expertIntermediate]. */
  expertGate?: TensorRef[];
  expertUp?: TensorRef[];
  expertDown?: TensorRef[];
  /** The shared expert: gate and up [sharedIntermediate, hidden], down [hidden, sharedIntermediate]. */
  sharedGateProj?: TensorRef;
  sharedUpProj?: TensorRef;
  sharedDownProj?: TensorRef;
  /** Qwen2-MoE: the shared expert's gate, [1, hidden]. */
  sharedExpertGate?: TensorRef;
  /** sandwichNorms: RMSNorm of the MLP output before the residual add (GLM-4's post_mlp_layernorm, Gemma's post_feedforward_layernorm). */
  postMlpNorm?: TensorRef;
}

export interface WeightLayout {
  /** [vocab, hidden]. */
  embed: TensorRef;
  layers: LayerWeights[];
  /** [hidden]. */
  finalNorm: TensorRef;
  /** [vocab, hidden]; absent when tiedEmbeddings (the LM head is embed). */
  lmHead?: TensorRef;
}

export interface ModelSpec {
  architecture: Architecture;
  /** config.json's model_type, verbatim. */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** max_position_embeddings. */
  contextLength: number;
  norm: NormSpec;
  rope: RopeSpec;
  /** Bias on q, k and v projections (Qwen2 always; GLM by default; Llama/Qwen3 when attention_bias). */
  qkvBias: boolean;
  /** Bias on the output projection (Llama/Qwen3 when attention_bias; never Qwen2/GLM/Mistral). */
  oBias: boolean;
  /** Qwen3, Gemma 3: per-head RMSNorm on q and k before RoPE. */
  qkNorm: boolean;
  /** GLM-4-0414, Gemma 2/3: norms of the attention and MLP outputs before their residual adds. */
  sandwichNorms: boolean;
  /** GLM: one gate_up_proj weight, gate first. */
  fusedGateUp: boolean;
  /** The LM head reuses the embedding table. */
  tiedEmbeddings: boolean;
  /** The gated MLP's activation: act(gate) * up. */
  activation: 'silu' | 'gelu_tanh';
  /** Mixture-of-experts MLPs (Qwen2/3-MoE, GLM-4.5); null for dense models. */
  moe: MoeSpec | null;
  /**
   * A query at position p sees keys at positions > p - slidingWindow in the layers that
   * slidingLayers marks (Mistral: all; Gemma 2: every other one; Gemma 3: five in six);
   * null = unlimited everywhere.
   */
  slidingWindow: number | null;
  /** Per layer: whether slidingWindow applies there (all false when it is null). */
  slidingLayers: boolean[];
  /** RoPE of the sliding-window layers where it differs from `rope` (Gemma 3's rope_local_base_freq); null = the same. */
  localRope: RopeSpec | null;
  /** Multiplies q.k: 1 / sqrt(headDim), Gemma 2/3 query_pre_attn_scalar^-0.5. */
  attentionScale: number;
  /** Gemma 2: attention scores become cap * tanh(score / cap) before the softmax; null = none. */
  attentionSoftcap: number | null;
  /** Gemma 2: logits become cap * tanh(logit / cap); null = none. */
  finalLogitSoftcap: number | null;
  /**
   * Gemma: the embedding rows are multiplied by sqrt(hidden_size), rounded to the
   * checkpoint's dtype as transformers does (sqrt(2048) is 45.25 in bf16); 1 elsewhere.
   * A tied LM head reads the table unscaled.
   */
  embeddingScale: number;
  bosTokenId: number | null;
  /** From config.json; generation_config.json may add more (see loadGenerationConfig). */
  eosTokenIds: number[];
  /** config.json's torch_dtype, for information. */
  torchDtype: string | null;
  /** How the checkpoint's weights are quantized (config.json quantization_config); null = plain floats. */
  quantization: Fp8BlockQuantization | null;
  weights: WeightLayout;
}

/**
 * RoPE inverse frequencies, rotaryDim / 2 of them, with the spec's scaling applied.
 * Float64 so the reference and the GPU upload (rounded to f32 there) start from one truth.
 */
export function ropeInvFreq(rope: RopeSpec): Float64Array {
  const half = rope.rotaryDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(rope.theta, (2 * i) / rope.rotaryDim);
  const s = rope.scaling;
  if (s.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / s.factor;
  } else if (s.type === 'llama3') {
    // transformers' _compute_llama3_parameters
    const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowFreqWavelen) inv[i] = f / s.factor;
      else if (wavelen >= highFreqWavelen) {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
  }
  return inv;
}

/** Every tensor the layout names, in load order (embed, layers, final norm, LM head). */
export function listWeights(layout: WeightLayout): TensorRef[] {
  const out: TensorRef[] = [layout.embed];
  for (const layer of layout.layers) {
    for (const ref of Object.values(layer) as (TensorRef | TensorRef[] | undefined)[]) {
      if (Array.isArray(ref)) out.push(...ref);
      else if (ref) out.push(ref);
    }
  }
  out.push(layout.finalNorm);
  if (layout.lmHead) out.push(layout.lmHead);
  return out;
}

/**
 * A layer's projection weights: q, k, v, o, the dense MLP's, every expert's and the shared
 * expert's; not its router, norms or biases, nor Qwen2-MoE's one-row shared expert gate.
 * What quantized exports store quantized (FP8) and what --weight-dtype int8 quantizes (with
 * the router beside them).
 */
export function layerProjections(l: LayerWeights): TensorRef[] {
  const single = [l.qProj, l.kProj, l.vProj, l.oProj, l.gateProj, l.upProj, l.gateUpProj, l.downProj];
  const shared = [l.sharedGateProj, l.sharedUpProj, l.sharedDownProj];
  const experts = [l.expertGate, l.expertUp, l.expertDown].flatMap((e) => e ?? []);
  return [...single, ...shared].filter((r): r is TensorRef => r !== undefined).concat(experts);
}

/** Parameter count from the layout (tied embeddings counted once). */
export function parameterCount(spec: ModelSpec): number {
  return listWeights(spec.weights).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
}
