/**
 * What each supported model_type means, as data read off transformers' modeling_*.py and
 * configuration_*.py. config.ts combines these traits with a config.json; nothing else in
 * the engine looks at the architecture's name.
 */
import type { Architecture } from './model-spec.js';

/** A bias that is always on, always off, or follows config.attention_bias. */
type BiasRule = boolean | 'attention_bias';

export interface ArchitectureTraits {
  ropeLayout: 'half' | 'interleaved';
  qkvBias: BiasRule;
  oBias: BiasRule;
  qkNorm: boolean;
  sandwichNorms: boolean;
  fusedGateUp: boolean;
  /** Whether config.sliding_window applies (Qwen2/3 also need use_sliding_window). */
  slidingWindow: 'never' | 'when_set' | 'when_use_sliding_window';
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
  };
}

/** GLM-4-9B-chat-hf's traits (model_type glm); glm4 is the same with sandwich norms. */
const GLM: ArchitectureTraits = {
  ropeLayout: 'interleaved',
  qkvBias: 'attention_bias',
  oBias: false,
  qkNorm: false,
  sandwichNorms: false,
  fusedGateUp: true,
  slidingWindow: 'never',
  defaults: {
    headDim: 128,
    partialRotaryFactor: 0.5,
    attentionBias: true,
    rmsNormEps: 1.5625e-7,
    ropeTheta: 10000,
    contextLength: 131072,
    tieWordEmbeddings: false,
  },
};

export const ARCHITECTURES: Record<Architecture, ArchitectureTraits> = {
  // LlamaAttention: q/k/v/o all take bias=config.attention_bias (default False).
  llama: {
    ropeLayout: 'half',
    qkvBias: 'attention_bias',
    oBias: 'attention_bias',
    qkNorm: false,
    sandwichNorms: false,
    fusedGateUp: false,
    slidingWindow: 'never',
    defaults: {
      partialRotaryFactor: 1,
      attentionBias: false,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      contextLength: 2048,
      tieWordEmbeddings: false,
    },
  },
  // MistralAttention: no biases; sliding_window null in v0.2+ checkpoints.
  mistral: {
    ropeLayout: 'half',
    qkvBias: false,
    oBias: false,
    qkNorm: false,
    sandwichNorms: false,
    fusedGateUp: false,
    slidingWindow: 'when_set',
    defaults: {
      partialRotaryFactor: 1,
      attentionBias: false,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      contextLength: 32768,
      tieWordEmbeddings: false,
    },
  },
  // Qwen2Attention: q/k/v bias=True unconditionally, o_proj bias=False.
  qwen2: {
    ropeLayout: 'half',
    qkvBias: true,
    oBias: false,
    qkNorm: false,
    sandwichNorms: false,
    fusedGateUp: false,
    slidingWindow: 'when_use_sliding_window',
    defaults: {
      partialRotaryFactor: 1,
      attentionBias: true,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      contextLength: 32768,
      tieWordEmbeddings: false,
    },
  },
  // Qwen3Attention: q/k/v/o bias=config.attention_bias (default False); q_norm/k_norm
  // (RMSNorm over head_dim) on each head before RoPE; Qwen3Config.head_dim defaults to 128.
  qwen3: {
    ropeLayout: 'half',
    qkvBias: 'attention_bias',
    oBias: 'attention_bias',
    qkNorm: true,
    sandwichNorms: false,
    fusedGateUp: false,
    slidingWindow: 'when_use_sliding_window',
    defaults: {
      headDim: 128,
      partialRotaryFactor: 1,
      attentionBias: false,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      contextLength: 32768,
      tieWordEmbeddings: false,
    },
  },
  // GlmAttention: q/k/v bias=config.attention_bias (default True), o_proj bias=False;
  // GlmMLP.gate_up_proj [2I, H], chunk(2) gives gate then up; RoPE interleaved
  // (rotate_half on x[0::2], x[1::2], cos/sin repeat_interleave(2)) on the first
  // head_dim * partial_rotary_factor (default 0.5) dimensions.
  glm: GLM,
  // Glm4DecoderLayer: as GLM plus post_self_attn_layernorm (after attention, before the
  // residual add) and post_mlp_layernorm (after the MLP, before the residual add).
  glm4: { ...GLM, sandwichNorms: true },
};
