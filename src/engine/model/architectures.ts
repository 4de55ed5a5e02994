/**
 * What each supported model_type means, as data read off transformers' modeling_*.py and
 * configuration_*.py. config.ts combines these traits with a config.json; nothing else in
 * the engine looks at the architecture's name.
 */
import type { Architecture, ModelSpec } from './model-spec.js';

/** A bias that is always on, always off, or follows config.attention_bias. */
type BiasRule = boolean | 'attention_bias';

/**
 * Where config.sliding_window applies (a config.json with `layer_types` says so per layer
 * instead, as transformers >= 4.53 writes it):
 * - never;
 * - when_set: every layer, when the window is set (Mistral);
 * - when_use_sliding_window: layers from max_window_layers on, when use_sliding_window (Qwen2/3);
 * - pattern: every layer but each sliding_window_pattern-th (Gemma 2: 2, Gemma 3: 6).
 */
export type SlidingWindowRule = 'never' | 'when_set' | 'when_use_sliding_window' | 'pattern';

export interface ArchitectureTraits {
  ropeLayout: 'half' | 'interleaved';
  qkvBias: BiasRule;
  oBias: BiasRule;
  /** Per-head q/k RMSNorm: always, never, or as config.use_qk_norm says (GLM-4.5). */
  qkNorm: boolean | 'use_qk_norm';
  sandwichNorms: boolean;
  /** Tensor names of the sandwich norms: GLM-4's post_self_attn/post_mlp or Gemma's post_attention/pre_feedforward/post_feedforward. */
  normNames: 'llama' | 'gemma';
  fusedGateUp: boolean;
  slidingWindow: SlidingWindowRule;
  /** Gemma: RMSNorm x * (1 + w), embeddings times sqrt(hidden_size), query_pre_attn_scalar and soft-capping keys. */
  gemma: boolean;
  /**
   * The MLP activation's config key: hidden_act, or Gemma's hidden_activation (Gemma 1.0
   * checkpoints carry `"hidden_act": "gelu"`, the exact GELU, though the model was trained
   * with the tanh form; transformers' GemmaMLP used hidden_activation, defaulting to it).
   */
  activationKey: 'hidden_act' | 'hidden_activation';
  /** Mixture-of-experts MLPs: how the configuration class and the checkpoint describe them. */
  moe?: MoeTraits;
  /** Defaults of the configuration class for keys a config.json may omit. */
  defaults: {
    /** undefined: hidden_size / num_attention_heads. */
    headDim?: number;
    partialRotaryFactor: number;
    attentionBias: boolean;
    rmsNormEps: number;
    ropeTheta: number;
    contextLength: number;
    tieWordEmbeddings: boolean;
    activation: string;
    /** when_use_sliding_window: layers below this keep full attention. */
    maxWindowLayers?: number;
    /** pattern: the window and its period. */
    slidingWindow?: number;
    slidingWindowPattern?: number;
    /** Gemma 2/3: the attention scale is query_pre_attn_scalar^-0.5. */
    queryPreAttnScalar?: number;
    attnLogitSoftcapping?: number | null;
    finalLogitSoftcapping?: number | null;
    /** Gemma 3: RoPE theta of the sliding-window layers (rope_local_base_freq). */
    localRopeTheta?: number;
    /** Mixture of experts: the expert count, num_experts_per_tok, moe_intermediate_size, norm_topk_prob. */
    numExperts?: number;
    expertsPerToken?: number;
    expertIntermediateSize?: number;
    normTopKProb?: boolean;
    /** Qwen2-MoE: shared_expert_intermediate_size. */
    sharedExpertIntermediateSize?: number;
    /** GLM-4.5: first_k_dense_replace (dense MLPs below this layer). */
    firstKDense?: number;
    /** Sizes the configuration class defaults (Gemma 3's text_config leaves most of them out); absent: required keys. */
    shape?: Pick<ModelSpec, 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'numKvHeads'>;
  };
}

/**
 * The two families of mixture-of-experts MLP (model-spec.ts MoeSpec says what each computes):
 * - qwen: Qwen2/3-MoE's Qwen2MoeSparseMoeBlock / Qwen3MoeSparseMoeBlock: num_experts,
 *   softmax router, layers sparse unless mlp_only_layers lists them, when (i + 1) %
 *   decoder_sparse_step == 0; with `sharedExpert`, Qwen2-MoE's mlp.shared_expert of
 *   shared_expert_intermediate_size scaled by sigmoid(mlp.shared_expert_gate . x).
 * - glm4_moe: Glm4MoeMoE (DeepSeek-V3's router): n_routed_experts, sigmoid scores plus
 *   mlp.gate.e_score_correction_bias for the choice, n_group / topk_group, routed_scaling_factor,
 *   mlp.shared_experts of n_shared_experts * moe_intermediate_size always added; layers
 *   below first_k_dense_replace dense.
 */
export type MoeTraits = { family: 'qwen'; sharedExpert: boolean } | { family: 'glm4_moe' };

/** GLM-4-9B-chat-hf's traits (model_type glm); glm4 is the same with sandwich norms. */
const GLM: ArchitectureTraits = {
  ropeLayout: 'interleaved',
  qkvBias: 'attention_bias',
  oBias: false,
  qkNorm: false,
  sandwichNorms: false,
  normNames: 'llama',
  fusedGateUp: true,
  slidingWindow: 'never',
  gemma: false,
  activationKey: 'hidden_act',
  defaults: {
    headDim: 128,
    partialRotaryFactor: 0.5,
    attentionBias: true,
    rmsNormEps: 1.5625e-7,
    ropeTheta: 10000,
    contextLength: 131072,
    tieWordEmbeddings: false,
    activation: 'silu',
  },
};

/** The plain pre-norm decoder's traits, which most architectures change in a few places. */
const LLAMA_LIKE = {
  ropeLayout: 'half',
  qkNorm: false,
  sandwichNorms: false,
  normNames: 'llama',
  fusedGateUp: false,
  gemma: false,
  activationKey: 'hidden_act',
} as const;

/** Qwen2's traits (Qwen2 and Qwen2-MoE). */
const QWEN2 = {
  qkvBias: true,
  oBias: false,
  ...LLAMA_LIKE,
  slidingWindow: 'when_use_sliding_window',
  defaults: {
    partialRotaryFactor: 1,
    attentionBias: true,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    contextLength: 32768,
    tieWordEmbeddings: false,
    activation: 'silu',
    maxWindowLayers: 28,
  },
} as const satisfies ArchitectureTraits;

/**
 * Qwen3's attention (Qwen3 and Qwen3-MoE): q/k/v/o bias=config.attention_bias (default
 * False), q_norm/k_norm over each head before RoPE; with use_sliding_window the window applies
 * from layer max_window_layers on. head_dim's default differs (set per architecture).
 */
const QWEN3: Omit<ArchitectureTraits, 'defaults'> & { defaults: Omit<ArchitectureTraits['defaults'], 'headDim'> } = {
  qkvBias: 'attention_bias',
  oBias: 'attention_bias',
  ...LLAMA_LIKE,
  qkNorm: true,
  slidingWindow: 'when_use_sliding_window',
  // Qwen3Config's defaults are Qwen2Config's but for attention_bias
  defaults: { ...QWEN2.defaults, attentionBias: false },
};

/**
 * GemmaConfig's defaults (Gemma 7B); Gemma 2 and 3 change a few. head_dim is set apart from
 * hidden_size / heads (256 in every published size but Gemma 2 27B's 128).
 */
const GEMMA_DEFAULTS = {
  headDim: 256,
  partialRotaryFactor: 1,
  attentionBias: false,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  contextLength: 8192,
  tieWordEmbeddings: true,
  activation: 'gelu_pytorch_tanh',
} as const;

/** Gemma 2 and 3: sandwich norms with Gemma's names, alternating sliding-window layers. */
const GEMMA_2_3 = {
  ...LLAMA_LIKE,
  qkvBias: 'attention_bias',
  oBias: 'attention_bias',
  sandwichNorms: true,
  normNames: 'gemma',
  slidingWindow: 'pattern',
  gemma: true,
  activationKey: 'hidden_activation',
} as const;

export const ARCHITECTURES: Record<Architecture, ArchitectureTraits> = {
  // LlamaAttention: q/k/v/o all take bias=config.attention_bias (default False).
  llama: {
    qkvBias: 'attention_bias',
    oBias: 'attention_bias',
    ...LLAMA_LIKE,
    slidingWindow: 'never',
    defaults: {
      partialRotaryFactor: 1,
      attentionBias: false,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      contextLength: 2048,
      tieWordEmbeddings: false,
      activation: 'silu',
    },
  },
  // MistralAttention: no biases; sliding_window null in v0.2+ checkpoints.
  mistral: {
    qkvBias: false,
    oBias: false,
    ...LLAMA_LIKE,
    slidingWindow: 'when_set',
    defaults: {
      partialRotaryFactor: 1,
      attentionBias: false,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      contextLength: 32768,
      tieWordEmbeddings: false,
      activation: 'silu',
    },
  },
  // Qwen2Attention: q/k/v bias=True unconditionally, o_proj bias=False; with use_sliding_window
  // the window applies from layer max_window_layers on (Qwen2Config.layer_types).
  qwen2: QWEN2,
  // Qwen2MoeConfig: Qwen2's attention (q/k/v bias, o_proj none), Qwen2MoeSparseMoeBlock for
  // the MLP of every layer not in mlp_only_layers whose index + 1 is a multiple of
  // decoder_sparse_step: softmax router, top num_experts_per_tok (renormalised when
  // norm_topk_prob, default False), plus the shared expert (Qwen1.5-MoE-A2.7B's defaults).
  qwen2_moe: {
    ...QWEN2,
    moe: { family: 'qwen', sharedExpert: true },
    defaults: {
      ...QWEN2.defaults,
      numExperts: 60,
      expertsPerToken: 4,
      expertIntermediateSize: 1408,
      normTopKProb: false,
      sharedExpertIntermediateSize: 5632,
    },
  },
  // Qwen3Attention: q/k/v/o bias=config.attention_bias (default False); q_norm/k_norm
  // (RMSNorm over head_dim) on each head before RoPE; Qwen3Config.head_dim defaults to 128.
  qwen3: { ...QWEN3, defaults: { ...QWEN3.defaults, headDim: 128 } },
  // Qwen3MoeConfig: Qwen3's attention (q/k norms; head_dim defaults to hidden / heads here),
  // and Qwen3MoeSparseMoeBlock for the MLP of every layer not in mlp_only_layers whose index
  // + 1 is a multiple of decoder_sparse_step: softmax over the router's logits in float,
  // torch.topk, renormalised when norm_topk_prob (default False; the published checkpoints
  // set it), each expert a SwiGLU MLP of moe_intermediate_size.
  qwen3_moe: {
    ...QWEN3,
    moe: { family: 'qwen', sharedExpert: false },
    defaults: { ...QWEN3.defaults, numExperts: 128, expertsPerToken: 8, expertIntermediateSize: 768, normTopKProb: false },
  },
  // GlmAttention: q/k/v bias=config.attention_bias (default True), o_proj bias=False;
  // GlmMLP.gate_up_proj [2I, H], chunk(2) gives gate then up; RoPE interleaved
  // (rotate_half on x[0::2], x[1::2], cos/sin repeat_interleave(2)) on the first
  // head_dim * partial_rotary_factor (default 0.5) dimensions.
  glm: GLM,
  // Glm4DecoderLayer: as GLM plus post_self_attn_layernorm (after attention, before the
  // residual add) and post_mlp_layernorm (after the MLP, before the residual add).
  glm4: { ...GLM, sandwichNorms: true },
  // Glm4MoeAttention: q/k/v bias=config.attention_bias (default False), o_proj none, q_norm
  // and k_norm when use_qk_norm; RoPE with rotate_half (not GLM's interleaving) on the first
  // head_dim * partial_rotary_factor (0.5) dimensions; head_dim defaults to hidden / heads.
  // Separate gate_proj and up_proj in the dense layers; Glm4MoeMoE from first_k_dense_replace on.
  glm4_moe: {
    ...LLAMA_LIKE,
    qkvBias: 'attention_bias',
    oBias: false,
    qkNorm: 'use_qk_norm',
    slidingWindow: 'never',
    moe: { family: 'glm4_moe' },
    defaults: {
      partialRotaryFactor: 0.5,
      attentionBias: false,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      contextLength: 131072,
      tieWordEmbeddings: false,
      activation: 'silu',
      numExperts: 128,
      expertsPerToken: 8,
      expertIntermediateSize: 1408,
      normTopKProb: true,
      firstKDense: 1,
    },
  },
  // GemmaRMSNorm: x * (1 + w), in float32; GemmaModel scales the embeddings by
  // sqrt(hidden_size) cast to the hidden states' dtype; q/k/v/o bias=attention_bias.
  gemma: {
    ...LLAMA_LIKE,
    qkvBias: 'attention_bias',
    oBias: 'attention_bias',
    slidingWindow: 'never',
    gemma: true,
    activationKey: 'hidden_activation',
    defaults: GEMMA_DEFAULTS,
  },
  // Gemma2DecoderLayer: input_layernorm -> attention -> post_attention_layernorm -> residual,
  // pre_feedforward_layernorm -> MLP -> post_feedforward_layernorm -> residual. Attention
  // scale query_pre_attn_scalar^-0.5, scores soft-capped at attn_logit_softcapping (50),
  // logits at final_logit_softcapping (30); layer i slides when i is even.
  gemma2: {
    ...GEMMA_2_3,
    defaults: {
      ...GEMMA_DEFAULTS,
      slidingWindow: 4096,
      slidingWindowPattern: 2,
      queryPreAttnScalar: 256,
      attnLogitSoftcapping: 50,
      finalLogitSoftcapping: 30,
    },
  },
  // Gemma3TextModel: as Gemma 2 plus q_norm/k_norm (Gemma's (1 + w) form) before RoPE, no
  // soft-capping by default, every sixth layer global; global layers use rope_theta and
  // rope_scaling, sliding ones rope_local_base_freq without scaling.
  gemma3_text: {
    ...GEMMA_2_3,
    qkNorm: true,
    defaults: {
      ...GEMMA_DEFAULTS,
      ropeTheta: 1_000_000,
      contextLength: 131072,
      slidingWindow: 4096,
      slidingWindowPattern: 6,
      queryPreAttnScalar: 256,
      attnLogitSoftcapping: null,
      finalLogitSoftcapping: null,
      localRopeTheta: 10000,
      shape: { vocabSize: 262_208, hiddenSize: 2304, intermediateSize: 9216, numLayers: 26, numHeads: 8, numKvHeads: 4 },
    },
  },
};
