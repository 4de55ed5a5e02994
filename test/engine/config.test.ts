import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelSpec, modelSpecFromConfig } from '../../src/engine/model/config.js';
import { generationDefaults, loadGenerationConfig } from '../../src/engine/model/generation-config.js';
import { listWeights, parameterCount, ropeInvFreq } from '../../src/engine/model/model-spec.js';
import { isAutoGlmError } from '../../src/errors.js';

const root = join(import.meta.dirname, '..', '..');

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
/** A copy of demo-stories to break. */
function demoCopy(): string {
  const d = mkdtempSync(join(tmpdir(), 'config-test-'));
  dirs.push(d);
  cpSync(join(root, 'models/demo-stories'), d, { recursive: true });
  return d;
}

// Abridged from the checkpoints' published config.json files.
const LLAMA_3_1_8B = {
  model_type: 'llama',
  vocab_size: 128256,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-5,
  rope_theta: 500000.0,
  hidden_act: 'silu',
  attention_bias: false,
  mlp_bias: false,
  tie_word_embeddings: false,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  torch_dtype: 'bfloat16',
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
};
const QWEN2_5_0_5B = {
  model_type: 'qwen2',
  vocab_size: 151936,
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  use_sliding_window: false,
  sliding_window: 32768,
  max_window_layers: 21,
  bos_token_id: 151643,
  eos_token_id: 151643,
};
const QWEN3_0_6B = {
  model_type: 'qwen3',
  vocab_size: 151936,
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  max_position_embeddings: 40960,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  hidden_act: 'silu',
  attention_bias: false,
  tie_word_embeddings: true,
  use_sliding_window: false,
  sliding_window: null,
  bos_token_id: 151643,
  eos_token_id: 151645,
};
/** Qwen/Qwen3-30B-A3B's config.json (abridged: keys the loader does not read left out). */
const QWEN3_30B_A3B = {
  architectures: ['Qwen3MoeForCausalLM'],
  model_type: 'qwen3_moe',
  attention_bias: false,
  bos_token_id: 151643,
  decoder_sparse_step: 1,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 2048,
  intermediate_size: 6144,
  max_position_embeddings: 40960,
  max_window_layers: 48,
  mlp_only_layers: [],
  moe_intermediate_size: 768,
  norm_topk_prob: true,
  num_attention_heads: 32,
  num_experts: 128,
  num_experts_per_tok: 8,
  num_hidden_layers: 48,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000.0,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  use_sliding_window: false,
  vocab_size: 151936,
};

/** zai-org/GLM-4.5-Air's config.json (abridged). */
const GLM_4_5_AIR = {
  architectures: ['Glm4MoeForCausalLM'],
  model_type: 'glm4_moe',
  attention_bias: true,
  eos_token_id: [151329, 151336, 151338],
  first_k_dense_replace: 1,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 4096,
  intermediate_size: 10944,
  max_position_embeddings: 131072,
  moe_intermediate_size: 1408,
  n_group: 1,
  n_routed_experts: 128,
  n_shared_experts: 1,
  norm_topk_prob: true,
  num_attention_heads: 96,
  num_experts_per_tok: 8,
  num_hidden_layers: 46,
  num_key_value_heads: 8,
  num_nextn_predict_layers: 1,
  partial_rotary_factor: 0.5,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 1000000,
  routed_scaling_factor: 1.0,
  tie_word_embeddings: false,
  topk_group: 1,
  torch_dtype: 'bfloat16',
  use_qk_norm: false,
  vocab_size: 151552,
};
/** Qwen/Qwen1.5-MoE-A2.7B's config.json (abridged). */
const QWEN1_5_MOE_A2_7B = {
  architectures: ['Qwen2MoeForCausalLM'],
  model_type: 'qwen2_moe',
  bos_token_id: 151643,
  decoder_sparse_step: 1,
  eos_token_id: 151643,
  hidden_act: 'silu',
  hidden_size: 2048,
  intermediate_size: 5632,
  max_position_embeddings: 8192,
  max_window_layers: 21,
  moe_intermediate_size: 1408,
  norm_topk_prob: false,
  num_attention_heads: 16,
  num_experts: 60,
  num_experts_per_tok: 4,
  num_hidden_layers: 24,
  num_key_value_heads: 16,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  shared_expert_intermediate_size: 5632,
  sliding_window: 32768,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  use_sliding_window: false,
  vocab_size: 151936,
};
const GLM_4_9B_CHAT_HF = {
  model_type: 'glm',
  vocab_size: 151552,
  hidden_size: 4096,
  intermediate_size: 13696,
  num_hidden_layers: 40,
  num_attention_heads: 32,
  num_key_value_heads: 2,
  head_dim: 128,
  max_position_embeddings: 131072,
  rms_norm_eps: 1.5625e-7,
  rope_theta: 10000.0,
  hidden_act: 'silu',
  partial_rotary_factor: 0.5,
  attention_bias: true,
  tie_word_embeddings: false,
  eos_token_id: [151329, 151336, 151338],
  pad_token_id: 151329,
};
const MISTRAL_7B_V0_1 = {
  model_type: 'mistral',
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  hidden_act: 'silu',
  sliding_window: 4096,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

function messageOf(f: () => unknown): string {
  return (errorOf(f) as Error).message;
}

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

// Gemma checkpoints' published config.json files (google/gemma-2b, gemma-2-2b-it, gemma-3-1b-it), abridged.
const GEMMA_2B = {
  model_type: 'gemma',
  attention_bias: false,
  bos_token_id: 2,
  eos_token_id: 1,
  head_dim: 256,
  hidden_act: 'gelu',
  hidden_size: 2048,
  intermediate_size: 16384,
  max_position_embeddings: 8192,
  num_attention_heads: 8,
  num_hidden_layers: 18,
  num_key_value_heads: 1,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 10000.0,
  torch_dtype: 'bfloat16',
  vocab_size: 256000,
};
const GEMMA_2_2B_IT = {
  model_type: 'gemma2',
  attention_bias: false,
  attn_logit_softcapping: 50.0,
  bos_token_id: 2,
  eos_token_id: [1, 107],
  final_logit_softcapping: 30.0,
  head_dim: 256,
  hidden_act: 'gelu_pytorch_tanh',
  hidden_activation: 'gelu_pytorch_tanh',
  hidden_size: 2304,
  intermediate_size: 9216,
  max_position_embeddings: 8192,
  num_attention_heads: 8,
  num_hidden_layers: 26,
  num_key_value_heads: 4,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_theta: 10000.0,
  sliding_window: 4096,
  torch_dtype: 'float32',
  vocab_size: 256000,
};
const GEMMA_3_1B_IT = {
  model_type: 'gemma3_text',
  attention_bias: false,
  attn_logit_softcapping: null,
  bos_token_id: 2,
  eos_token_id: [1, 106],
  final_logit_softcapping: null,
  head_dim: 256,
  hidden_activation: 'gelu_pytorch_tanh',
  hidden_size: 1152,
  intermediate_size: 6912,
  max_position_embeddings: 32768,
  num_attention_heads: 4,
  num_hidden_layers: 26,
  num_key_value_heads: 1,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_local_base_freq: 10000,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: 512,
  sliding_window_pattern: 6,
  torch_dtype: 'bfloat16',
  vocab_size: 262144,
};

describe('modelSpecFromConfig', () => {
  it('demo-stories: plain Llama', async () => {
    const s = await loadModelSpec(join(root, 'models/demo-stories'));
    expect(s).toMatchObject({
      architecture: 'llama',
      vocabSize: 258,
      hiddenSize: 256,
      intermediateSize: 704,
      numLayers: 4,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 32,
      contextLength: 512,
      norm: { eps: 1e-5, onePlus: false },
      rope: { layout: 'half', rotaryDim: 32, theta: 10000, scaling: { type: 'none' } },
      qkvBias: false,
      oBias: false,
      qkNorm: false,
      sandwichNorms: false,
      fusedGateUp: false,
      tiedEmbeddings: false,
      activation: 'silu',
      slidingWindow: null,
      bosTokenId: 256,
      eosTokenIds: [257],
      torchDtype: 'bfloat16',
    });
    expect(s.attentionScale).toBeCloseTo(1 / Math.sqrt(32), 15);
    expect(parameterCount(s)).toBe(3_083_520); // the README's count
    expect(s.weights.lmHead).toEqual({ name: 'lm_head.weight', shape: [258, 256] });
  });

  it('Llama 3.1: llama3 rope scaling and several EOS ids', () => {
    const s = modelSpecFromConfig(LLAMA_3_1_8B);
    expect(s.rope.scaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(s.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(s.headDim).toBe(128);
    const inv = ropeInvFreq(s.rope);
    expect(inv).toHaveLength(64);
    expect(inv[0]).toBe(1); // wavelength 2*pi: far below 8192/4, kept
    expect(inv[63]).toBeCloseTo(Math.pow(500000, -126 / 128) / 8, 20); // long wavelength: divided by factor
    // the smooth band lies between the two, monotone
    for (let i = 1; i < 64; i++) expect(inv[i]!).toBeLessThan(inv[i - 1]!);
    expect(parameterCount(s)).toBe(8_030_261_248);
  });

  it('Qwen2.5: QKV bias without o bias, tied embeddings, sliding window off', () => {
    const s = modelSpecFromConfig(QWEN2_5_0_5B);
    expect(s).toMatchObject({ architecture: 'qwen2', qkvBias: true, oBias: false, tiedEmbeddings: true, slidingWindow: null, headDim: 64 });
    expect(s.weights.lmHead).toBeUndefined();
    expect(s.weights.layers[0]!.qBias).toEqual({ name: 'model.layers.0.self_attn.q_proj.bias', shape: [896] });
    expect(s.weights.layers[0]!.kBias!.shape).toEqual([128]);
    expect(parameterCount(s)).toBe(494_032_768);
  });

  it('Qwen3: head_dim independent of hidden/heads, q_norm and k_norm', () => {
    const s = modelSpecFromConfig(QWEN3_0_6B);
    expect(s).toMatchObject({ architecture: 'qwen3', headDim: 128, qkNorm: true, qkvBias: false, tiedEmbeddings: true });
    expect(s.weights.layers[3]!.qProj.shape).toEqual([2048, 1024]);
    expect(s.weights.layers[3]!.qNorm).toEqual({ name: 'model.layers.3.self_attn.q_norm.weight', shape: [128] });
    expect(s.weights.layers[3]!.oProj.shape).toEqual([1024, 2048]);
    // Qwen3Config's head_dim default is 128, not hidden / heads
    const { head_dim: _omit, ...noHeadDim } = QWEN3_0_6B;
    expect(modelSpecFromConfig(noHeadDim).headDim).toBe(128);
  });

  it('Qwen3-30B-A3B (qwen3_moe): 128 experts, 8 per token, renormalised; experts named per index; mlp_only_layers and decoder_sparse_step', () => {
    const s = modelSpecFromConfig(QWEN3_30B_A3B);
    expect(s).toMatchObject({ architecture: 'qwen3_moe', headDim: 128, qkNorm: true, qkvBias: false, intermediateSize: 6144 });
    expect(s.moe).toMatchObject({ numExperts: 128, topK: 8, expertIntermediateSize: 768, normalizeTopK: true });
    expect(s.moe!.layers.every((m) => m)).toBe(true);
    const l = s.weights.layers[5]!;
    expect(l.router).toEqual({ name: 'model.layers.5.mlp.gate.weight', shape: [128, 2048] });
    expect(l.expertGate).toHaveLength(128);
    expect(l.expertGate![127]).toEqual({ name: 'model.layers.5.mlp.experts.127.gate_proj.weight', shape: [768, 2048] });
    expect(l.expertUp![0]).toEqual({ name: 'model.layers.5.mlp.experts.0.up_proj.weight', shape: [768, 2048] });
    expect(l.expertDown![3]).toEqual({ name: 'model.layers.5.mlp.experts.3.down_proj.weight', shape: [2048, 768] });
    expect([l.gateProj, l.upProj, l.downProj]).toEqual([undefined, undefined, undefined]);
    // 30.5B parameters, as published
    expect(parameterCount(s) / 1e9).toBeCloseTo(30.53, 1);
    // Qwen3MoeConfig's defaults: norm_topk_prob false, head_dim from hidden / heads
    const { norm_topk_prob: _n, head_dim: _h, ...defaults } = QWEN3_30B_A3B;
    const d = modelSpecFromConfig(defaults);
    expect([d.moe!.normalizeTopK, d.headDim]).toEqual([false, 64]);
    // dense layers: listed in mlp_only_layers, or off the decoder_sparse_step
    const mixed = modelSpecFromConfig({ ...QWEN3_30B_A3B, num_hidden_layers: 6, mlp_only_layers: [0], decoder_sparse_step: 2 });
    expect(mixed.moe!.layers).toEqual([false, true, false, true, false, true]);
    expect(mixed.weights.layers[0]!.downProj).toEqual({ name: 'model.layers.0.mlp.down_proj.weight', shape: [2048, 6144] });
    expect(mixed.weights.layers[0]!.router).toBeUndefined();
    // no experts: a dense model
    expect(modelSpecFromConfig({ ...QWEN3_30B_A3B, num_experts: 0 }).moe).toBeNull();
    for (const [config, key] of [
      [{ ...QWEN3_30B_A3B, num_experts_per_tok: 129 }, 'num_experts_per_tok'],
      [{ ...QWEN3_30B_A3B, num_experts: 5000 }, 'num_experts'],
      [{ ...QWEN3_30B_A3B, mlp_only_layers: [-1] }, 'mlp_only_layers'],
      [{ ...QWEN3_30B_A3B, moe_intermediate_size: 770 }, 'moe_intermediate_size'],
      [{ ...QWEN3_30B_A3B, hidden_size: 2050 }, 'hidden_size'],
    ] as const) {
      const e = errorOf(() => modelSpecFromConfig(config));
      expect(isAutoGlmError(e, 'model_load_failed'), key).toBe(true);
      expect((e as Error).message).toContain(key);
    }
  });

  it('GLM-4.5-Air (glm4_moe): sigmoid router with a choice bias, a shared expert, the first layer dense, half-layout partial RoPE', () => {
    const s = modelSpecFromConfig(GLM_4_5_AIR);
    expect(s).toMatchObject({ architecture: 'glm4_moe', headDim: 128, qkvBias: true, oBias: false, qkNorm: false, fusedGateUp: false });
    expect(s.rope).toMatchObject({ layout: 'half', rotaryDim: 64, theta: 1_000_000 });
    expect(s.norm.eps).toBe(1e-5);
    expect(s.moe).toEqual({
      numExperts: 128,
      topK: 8,
      expertIntermediateSize: 1408,
      normalizeTopK: true,
      layers: Array.from({ length: 46 }, (_, i) => i >= 1),
      scoring: 'sigmoid',
      choiceBias: true,
      groups: 1,
      topkGroup: 1,
      routedScale: 1,
      sharedIntermediateSize: 1408,
      sharedGate: false,
    });
    // layer 0 dense with separate gate and up (not GLM-4's gate_up_proj)
    const dense = s.weights.layers[0]!;
    expect(dense.gateProj).toEqual({ name: 'model.layers.0.mlp.gate_proj.weight', shape: [10944, 4096] });
    expect([dense.router, dense.gateUpProj]).toEqual([undefined, undefined]);
    const l = s.weights.layers[45]!;
    expect(l.router).toEqual({ name: 'model.layers.45.mlp.gate.weight', shape: [128, 4096] });
    expect(l.routerBias).toEqual({ name: 'model.layers.45.mlp.gate.e_score_correction_bias', shape: [128] });
    expect(l.expertDown![127]).toEqual({ name: 'model.layers.45.mlp.experts.127.down_proj.weight', shape: [4096, 1408] });
    expect(l.sharedGateProj).toEqual({ name: 'model.layers.45.mlp.shared_experts.gate_proj.weight', shape: [1408, 4096] });
    expect(l.sharedDownProj).toEqual({ name: 'model.layers.45.mlp.shared_experts.down_proj.weight', shape: [4096, 1408] });
    expect(l.sharedExpertGate).toBeUndefined();
    expect(l.qBias).toEqual({ name: 'model.layers.45.self_attn.q_proj.bias', shape: [12288] });
    expect([l.oBias, l.qNorm]).toEqual([undefined, undefined]);
    // the multi-token-prediction layer (num_nextn_predict_layers) is not part of the decoder
    expect(s.weights.layers).toHaveLength(46);
    // 106B parameters, as published (the MTP layer not counted)
    expect(parameterCount(s) / 1e9).toBeCloseTo(106.85, 1);

    // GLM-4.5 (355B): use_qk_norm, 160 experts scaled by 2.5, three dense layers
    const big = modelSpecFromConfig({
      ...GLM_4_5_AIR,
      hidden_size: 5120,
      intermediate_size: 12288,
      moe_intermediate_size: 1536,
      n_routed_experts: 160,
      num_hidden_layers: 92,
      routed_scaling_factor: 2.5,
      first_k_dense_replace: 3,
      use_qk_norm: true,
    });
    expect(big.qkNorm).toBe(true);
    expect(big.weights.layers[3]!.qNorm).toEqual({ name: 'model.layers.3.self_attn.q_norm.weight', shape: [128] });
    expect(big.moe).toMatchObject({ numExperts: 160, routedScale: 2.5, sharedIntermediateSize: 1536 });
    expect(big.moe!.layers.slice(0, 4)).toEqual([false, false, false, true]);
    expect(parameterCount(big) / 1e9).toBeCloseTo(352.8, 0);

    // Glm4MoeConfig's defaults for keys a config leaves out
    const {
      n_group: _g,
      topk_group: _t,
      n_shared_experts: _n,
      routed_scaling_factor: _r,
      first_k_dense_replace: _f,
      ...bare
    } = GLM_4_5_AIR;
    expect(modelSpecFromConfig(bare).moe).toMatchObject({ groups: 1, topkGroup: 1, sharedIntermediateSize: 1408, routedScale: 1 });
    expect(modelSpecFromConfig(bare).moe!.layers[0]).toBe(false);
    // DeepSeek-V3-style group-limited routing: 8 groups of 16, 4 kept; two shared experts in one MLP
    const grouped = modelSpecFromConfig({ ...GLM_4_5_AIR, n_group: 8, topk_group: 4, n_shared_experts: 2 });
    expect(grouped.moe).toMatchObject({ groups: 8, topkGroup: 4, sharedIntermediateSize: 2816 });
    for (const [config, key] of [
      [{ ...GLM_4_5_AIR, n_group: 3 }, 'n_group'],
      [{ ...GLM_4_5_AIR, n_group: 64 }, 'n_group'],
      [{ ...GLM_4_5_AIR, n_group: 4, topk_group: 5 }, 'topk_group'],
      [{ ...GLM_4_5_AIR, n_shared_experts: 0 }, 'n_shared_experts'],
      [{ ...GLM_4_5_AIR, routed_scaling_factor: 0 }, 'routed_scaling_factor'],
      [{ ...GLM_4_5_AIR, use_qk_norm: 'yes' }, 'use_qk_norm'],
      [{ ...GLM_4_5_AIR, n_routed_experts: 5000 }, 'n_routed_experts'],
      [{ ...GLM_4_5_AIR, num_experts_per_tok: 200 }, 'num_experts_per_tok'],
    ] as const) {
      const e = errorOf(() => modelSpecFromConfig(config));
      expect(isAutoGlmError(e, 'model_load_failed'), key).toBe(true);
      expect((e as Error).message).toContain(key);
    }
  });

  it('Qwen1.5-MoE-A2.7B (qwen2_moe): softmax router, a shared expert behind a sigmoid gate, QKV bias', () => {
    const s = modelSpecFromConfig(QWEN1_5_MOE_A2_7B);
    expect(s).toMatchObject({ architecture: 'qwen2_moe', headDim: 128, qkvBias: true, oBias: false, qkNorm: false });
    expect(s.moe).toMatchObject({
      numExperts: 60,
      topK: 4,
      normalizeTopK: false,
      scoring: 'softmax',
      choiceBias: false,
      routedScale: 1,
      sharedIntermediateSize: 5632,
      sharedGate: true,
    });
    expect(s.moe!.layers.every((m) => m)).toBe(true);
    const l = s.weights.layers[23]!;
    expect(l.routerBias).toBeUndefined();
    expect(l.sharedUpProj).toEqual({ name: 'model.layers.23.mlp.shared_expert.up_proj.weight', shape: [5632, 2048] });
    expect(l.sharedExpertGate).toEqual({ name: 'model.layers.23.mlp.shared_expert_gate.weight', shape: [1, 2048] });
    // 14.3B parameters, as published
    expect(parameterCount(s) / 1e9).toBeCloseTo(14.32, 1);
    const e = errorOf(() => modelSpecFromConfig({ ...QWEN1_5_MOE_A2_7B, shared_expert_intermediate_size: 0 }));
    expect((e as Error).message).toContain('shared_expert_intermediate_size');
  });

  it('GLM-4-9B-chat-hf: interleaved partial RoPE, fused gate_up, QKV bias only', () => {
    const s = modelSpecFromConfig(GLM_4_9B_CHAT_HF);
    expect(s).toMatchObject({
      architecture: 'glm',
      rope: { layout: 'interleaved', rotaryDim: 64, theta: 10000 },
      qkvBias: true,
      oBias: false,
      fusedGateUp: true,
      sandwichNorms: false,
      norm: { eps: 1.5625e-7 },
      eosTokenIds: [151329, 151336, 151338],
      bosTokenId: null,
    });
    const l = s.weights.layers[0]!;
    expect(l.gateUpProj).toEqual({ name: 'model.layers.0.mlp.gate_up_proj.weight', shape: [27392, 4096] });
    expect(l.gateProj).toBeUndefined();
    expect(l.postSelfAttnNorm).toBeUndefined();
    expect(ropeInvFreq(s.rope)[1]).toBeCloseTo(Math.pow(10000, -2 / 64), 15);
  });

  it('GLM-4-0414 (glm4): adds the two sandwich norms; defaults from Glm4Config', () => {
    const s = modelSpecFromConfig({
      ...GLM_4_9B_CHAT_HF,
      model_type: 'glm4',
      partial_rotary_factor: undefined,
      attention_bias: undefined,
      head_dim: undefined,
    });
    expect(s).toMatchObject({
      architecture: 'glm4',
      sandwichNorms: true,
      qkvBias: true,
      headDim: 128,
      rope: { rotaryDim: 64, layout: 'interleaved' },
    });
    expect(s.weights.layers[39]!.postSelfAttnNorm).toEqual({ name: 'model.layers.39.post_self_attn_layernorm.weight', shape: [4096] });
    expect(s.weights.layers[39]!.postMlpNorm!.name).toBe('model.layers.39.post_mlp_layernorm.weight');
    expect(listWeights(s.weights)).toHaveLength(1 + 40 * 13 + 2);
  });

  it('Mistral: sliding window when set, none when null', () => {
    expect(modelSpecFromConfig(MISTRAL_7B_V0_1).slidingWindow).toBe(4096);
    expect(modelSpecFromConfig({ ...MISTRAL_7B_V0_1, sliding_window: null }).slidingWindow).toBeNull();
    // a window as long as the context (or one past u32, which the kernels would wrap) limits nothing
    expect(modelSpecFromConfig({ ...MISTRAL_7B_V0_1, sliding_window: 32768 }).slidingWindow).toBeNull();
    expect(modelSpecFromConfig({ ...MISTRAL_7B_V0_1, sliding_window: 2 ** 32 + 16 }).slidingWindow).toBeNull();
    expect(modelSpecFromConfig({ ...MISTRAL_7B_V0_1, sliding_window: 32767 }).slidingWindow).toBe(32767);
    expect(modelSpecFromConfig(MISTRAL_7B_V0_1)).toMatchObject({ qkvBias: false, oBias: false, headDim: 128 });
  });

  it('llama with attention_bias has q/k/v and o biases; rope_parameters (transformers v5) is read', () => {
    const s = modelSpecFromConfig({
      ...LLAMA_3_1_8B,
      attention_bias: true,
      rope_theta: undefined,
      rope_scaling: undefined,
      rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 1234 },
    });
    expect(s).toMatchObject({ qkvBias: true, oBias: true, rope: { theta: 1234, scaling: { type: 'linear', factor: 2 } } });
    expect(s.weights.layers[0]!.oBias).toEqual({ name: 'model.layers.0.self_attn.o_proj.bias', shape: [4096] });
    expect(ropeInvFreq(s.rope)[0]).toBe(0.5);
  });

  it('Gemma (gemma-2b): (1 + w) norms, tied table scaled by sqrt(hidden) in bf16, the tanh GELU whatever hidden_act says', () => {
    const s = modelSpecFromConfig(GEMMA_2B);
    expect(s).toMatchObject({
      architecture: 'gemma',
      norm: { eps: 1e-6, onePlus: true },
      headDim: 256,
      numKvHeads: 1,
      tiedEmbeddings: true,
      // the 1.0 configs' hidden_act "gelu" is the exact GELU; the model was trained with the tanh form
      activation: 'gelu_tanh',
      sandwichNorms: false,
      qkNorm: false,
      slidingWindow: null,
      localRope: null,
      attentionSoftcap: null,
      finalLogitSoftcap: null,
      // sqrt(2048) = 45.2548... is 45.25 as a bfloat16
      embeddingScale: 45.25,
    });
    expect(s.attentionScale).toBe(1 / 16);
    expect(s.slidingLayers).toEqual(new Array(18).fill(false));
    expect(s.weights.layers[0]!.postAttentionNorm.name).toBe('model.layers.0.post_attention_layernorm.weight');
    expect(parameterCount(s)).toBe(2_506_172_416);
    expect(messageOf(() => modelSpecFromConfig({ ...GEMMA_2B, hidden_activation: 'relu' }))).toContain('hidden_activation');
    // GemmaConfig has no soft-capping: transformers' Gemma 1 ignores the keys, and so do we
    expect(modelSpecFromConfig({ ...GEMMA_2B, attn_logit_softcapping: 50, final_logit_softcapping: 30 })).toMatchObject({
      attentionSoftcap: null,
      finalLogitSoftcap: null,
    });
  });

  it('Gemma 2 (gemma-2-2b-it): sandwich norms under Gemma names, soft-capping, query_pre_attn_scalar, every other layer sliding', () => {
    const s = modelSpecFromConfig(GEMMA_2_2B_IT);
    expect(s).toMatchObject({
      architecture: 'gemma2',
      sandwichNorms: true,
      attentionSoftcap: 50,
      finalLogitSoftcap: 30,
      slidingWindow: 4096,
      localRope: { theta: 10000 },
      // float32 checkpoint: sqrt(2304) = 48 exactly
      embeddingScale: 48,
      eosTokenIds: [1, 107],
    });
    expect(s.attentionScale).toBe(1 / 16);
    // layer i slides when i is even (Gemma2Attention: not bool(layer_idx % 2))
    expect(s.slidingLayers.slice(0, 4)).toEqual([true, false, true, false]);
    expect(s.slidingLayers.filter(Boolean)).toHaveLength(13);
    const l = s.weights.layers[1]!;
    expect([l.inputNorm.name, l.postSelfAttnNorm!.name, l.postAttentionNorm.name, l.postMlpNorm!.name]).toEqual([
      'model.layers.1.input_layernorm.weight',
      'model.layers.1.post_attention_layernorm.weight',
      'model.layers.1.pre_feedforward_layernorm.weight',
      'model.layers.1.post_feedforward_layernorm.weight',
    ]);
    expect(parameterCount(s)).toBe(2_614_341_888);
    // Gemma2Config's defaults: query_pre_attn_scalar 256, caps 50 and 30; null turns a cap off
    const { attn_logit_softcapping: _a, final_logit_softcapping: _f, query_pre_attn_scalar: _q, ...bare } = GEMMA_2_2B_IT;
    expect(modelSpecFromConfig({ ...bare, head_dim: 128 })).toMatchObject({
      attentionSoftcap: 50,
      finalLogitSoftcap: 30,
      attentionScale: 1 / 16,
    });
    expect(modelSpecFromConfig({ ...GEMMA_2_2B_IT, final_logit_softcapping: null }).finalLogitSoftcap).toBeNull();
    expect(messageOf(() => modelSpecFromConfig({ ...GEMMA_2_2B_IT, attn_logit_softcapping: -1 }))).toContain('attn_logit_softcapping');
    // transformers >= 4.53 writes layer_types, which then decides
    const types = Array.from({ length: 26 }, (_, i) => (i < 2 ? 'sliding_attention' : 'full_attention'));
    expect(modelSpecFromConfig({ ...GEMMA_2_2B_IT, layer_types: types }).slidingLayers.filter(Boolean)).toHaveLength(2);
    expect(messageOf(() => modelSpecFromConfig({ ...GEMMA_2_2B_IT, layer_types: types.slice(1) }))).toContain('layer_types');
    expect(messageOf(() => modelSpecFromConfig({ ...GEMMA_2_2B_IT, layer_types: [...types.slice(1), 'chunked_attention'] }))).toContain(
      '"chunked_attention"',
    );
  });

  it('Gemma 3 (gemma-3-1b-it): q/k norms, five sliding layers in six with their own RoPE base, no soft-capping', () => {
    const s = modelSpecFromConfig(GEMMA_3_1B_IT);
    expect(s).toMatchObject({
      architecture: 'gemma3_text',
      qkNorm: true,
      sandwichNorms: true,
      norm: { onePlus: true },
      attentionSoftcap: null,
      finalLogitSoftcap: null,
      slidingWindow: 512,
      rope: { theta: 1_000_000, scaling: { type: 'none' } },
      localRope: { theta: 10000, scaling: { type: 'none' } },
      // sqrt(1152) = 33.94 is 34 as a bfloat16
      embeddingScale: 34,
      eosTokenIds: [1, 106],
    });
    const globals = s.slidingLayers.flatMap((sliding, i) => (sliding ? [] : [i]));
    expect(globals).toEqual([5, 11, 17, 23]);
    expect(s.weights.layers[0]!.kNorm).toEqual({ name: 'model.layers.0.self_attn.k_norm.weight', shape: [256] });
    expect(parameterCount(s)).toBe(999_885_952);
    // Gemma 3 4B+: linear scaling on the global layers only
    const scaled = modelSpecFromConfig({ ...GEMMA_3_1B_IT, rope_scaling: { rope_type: 'linear', factor: 8 } });
    expect(scaled.rope.scaling).toEqual({ type: 'linear', factor: 8 });
    expect(scaled.localRope!.scaling).toEqual({ type: 'none' });
    // transformers v5: one rope_parameters block per layer type
    const { rope_theta: _t, rope_scaling: _s, rope_local_base_freq: _l, ...bare } = GEMMA_3_1B_IT;
    const v5 = modelSpecFromConfig({
      ...bare,
      rope_parameters: {
        full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 },
        sliding_attention: { rope_type: 'default', rope_theta: 1e4 },
      },
    });
    expect(v5.rope).toMatchObject({ theta: 1e6, scaling: { type: 'linear', factor: 8 } });
    expect(v5.localRope).toMatchObject({ theta: 1e4, scaling: { type: 'none' } });
    const bad = messageOf(() => modelSpecFromConfig({ ...bare, rope_parameters: { full_attention: { rope_theta: 'x' } } }));
    expect(bad).toContain('rope_parameters.full_attention.rope_theta');
  });

  it('Gemma 3 with its vision tower (gemma-3-4b-it): text_config read with Gemma3TextConfig defaults, decoder under language_model.model', () => {
    const s = modelSpecFromConfig({
      architectures: ['Gemma3ForConditionalGeneration'],
      model_type: 'gemma3',
      eos_token_id: [1, 106],
      torch_dtype: 'bfloat16',
      text_config: {
        hidden_size: 2560,
        intermediate_size: 10240,
        model_type: 'gemma3_text',
        num_attention_heads: 8,
        num_hidden_layers: 34,
        num_key_value_heads: 4,
        rope_scaling: { factor: 8.0, rope_type: 'linear' },
        sliding_window: 1024,
      },
      vision_config: { model_type: 'siglip_vision_model', hidden_size: 1152 },
    });
    expect(s).toMatchObject({
      architecture: 'gemma3_text',
      modelType: 'gemma3',
      // Gemma3TextConfig's defaults for what text_config leaves out
      vocabSize: 262_208,
      headDim: 256,
      contextLength: 131072,
      rope: { theta: 1_000_000, scaling: { type: 'linear', factor: 8 } },
      localRope: { theta: 10000, scaling: { type: 'none' } },
      slidingWindow: 1024,
      eosTokenIds: [1, 106],
      torchDtype: 'bfloat16',
      tiedEmbeddings: true,
    });
    expect(s.attentionScale).toBe(1 / 16);
    expect(s.weights.embed.name).toBe('language_model.model.embed_tokens.weight');
    expect(s.weights.layers[33]!.postMlpNorm!.name).toBe('language_model.model.layers.33.post_feedforward_layernorm.weight');
    expect(parameterCount(s)).toBe(3_880_263_168);
    expect(messageOf(() => modelSpecFromConfig({ model_type: 'gemma3' }))).toContain('text_config');
  });

  it('Qwen2 with use_sliding_window: the window applies from max_window_layers on, as in transformers', () => {
    const s = modelSpecFromConfig({ ...QWEN2_5_0_5B, use_sliding_window: true, sliding_window: 4096, max_window_layers: 21 });
    expect(s.slidingWindow).toBe(4096);
    expect(s.slidingLayers.indexOf(true)).toBe(21);
    expect(s.slidingLayers.filter(Boolean)).toHaveLength(QWEN2_5_0_5B.num_hidden_layers - 21);
    // every layer below max_window_layers: no window at all
    expect(
      modelSpecFromConfig({ ...QWEN2_5_0_5B, use_sliding_window: true, sliding_window: 4096, max_window_layers: 99 }).slidingWindow,
    ).toBeNull();
  });

  it('unknown model_type names the supported architectures', () => {
    const e = errorOf(() => modelSpecFromConfig({ ...LLAMA_3_1_8B, model_type: 'gpt2' }));
    expect(isAutoGlmError(e, 'unsupported_architecture')).toBe(true);
    expect((e as Error).message).toContain('"gpt2"');
    expect((e as Error).message).toContain(
      'llama, mistral, qwen2, qwen3, qwen2_moe, qwen3_moe, glm, glm4, glm4_moe, gemma, gemma2, gemma3_text',
    );
  });

  it('bad or unsupported values are typed errors naming the key', () => {
    const cases: [Record<string, unknown>, string, string][] = [
      [{ ...LLAMA_3_1_8B, hidden_size: 0 }, 'model_load_failed', 'hidden_size'],
      [{ ...LLAMA_3_1_8B, vocab_size: undefined }, 'model_load_failed', 'vocab_size'],
      [{ ...LLAMA_3_1_8B, num_key_value_heads: 5 }, 'model_load_failed', 'num_key_value_heads'],
      [{ ...LLAMA_3_1_8B, hidden_act: 'relu' }, 'unsupported_architecture', 'hidden_act'],
      [{ ...LLAMA_3_1_8B, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'unsupported_architecture', 'yarn'],
      [{ ...LLAMA_3_1_8B, rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'model_load_failed', 'low_freq_factor'],
      [{ ...LLAMA_3_1_8B, mlp_bias: true }, 'unsupported_architecture', 'mlp_bias'],
      [{ ...GLM_4_9B_CHAT_HF, partial_rotary_factor: 1.5 }, 'model_load_failed', 'partial_rotary_factor'],
    ];
    for (const [config, code, key] of cases) {
      const e = errorOf(() => modelSpecFromConfig(config));
      expect(isAutoGlmError(e), key).toBe(true);
      expect((e as { code: string }).code, key).toBe(code);
      expect((e as Error).message).toContain(key);
    }
  });

  it('a non-number in rope_parameters or rope_scaling is an error naming the nested key and the value', () => {
    const { rope_theta: _theta, rope_scaling: _scaling, ...bare } = LLAMA_3_1_8B;
    const cases: [Record<string, unknown>, string][] = [
      // these used to load with the default theta 10000 (or factor 0.5) in place of the file's
      [{ ...bare, rope_parameters: { rope_type: 'default', rope_theta: '500000' } }, 'config.json rope_parameters.rope_theta'],
      [
        { ...GLM_4_9B_CHAT_HF, partial_rotary_factor: undefined, rope_parameters: { partial_rotary_factor: '0.5' } },
        'rope_parameters.partial_rotary_factor',
      ],
      [{ ...bare, rope_parameters: { rope_type: 'linear', rope_theta: 1e4, factor: '2' } }, 'config.json rope_parameters.factor'],
      // this one used to say (got null) of a factor that was there
      [{ ...LLAMA_3_1_8B, rope_scaling: { rope_type: 'linear', factor: '2' } }, 'config.json rope_scaling.factor'],
    ];
    for (const [config, key] of cases) {
      const e = errorOf(() => modelSpecFromConfig(config));
      expect(isAutoGlmError(e, 'model_load_failed'), key).toBe(true);
      expect((e as Error).message, key).toContain(`${key} must be a positive number (got "`);
    }
    const v5 = modelSpecFromConfig({ ...bare, rope_parameters: { rope_type: 'linear', rope_theta: 5e5, factor: 2 } });
    expect(v5.rope.theta).toBe(5e5);
    expect(v5.rope.scaling).toEqual({ type: 'linear', factor: 2 });
  });

  it('an odd head_dim, or more heads than hidden_size, names the keys at fault with the values in force', () => {
    // used to blame partial_rotary_factor "(got null)" for an odd head_dim
    const odd = errorOf(() => modelSpecFromConfig({ ...QWEN3_0_6B, head_dim: 31 }));
    expect(isAutoGlmError(odd, 'model_load_failed')).toBe(true);
    expect((odd as Error).message).toContain('config.json head_dim 31 x partial_rotary_factor 1 gives rotary dimension 31');
    const derived = errorOf(() => modelSpecFromConfig({ ...LLAMA_3_1_8B, hidden_size: 4064 }));
    expect((derived as Error).message).toContain('head_dim 127 (hidden_size / num_attention_heads) x partial_rotary_factor 1');
    const glm = errorOf(() => modelSpecFromConfig({ ...GLM_4_9B_CHAT_HF, head_dim: undefined, partial_rotary_factor: 0.001 }));
    expect((glm as Error).message).toContain('head_dim 128 (the default) x partial_rotary_factor 0.001 gives rotary dimension 0');
    // used to say "head_dim must be a positive integer (got null)" of a key the file does not have
    const tooMany = errorOf(() => modelSpecFromConfig({ ...LLAMA_3_1_8B, num_attention_heads: 8192, num_key_value_heads: 8 }));
    expect((tooMany as Error).message).toBe(
      'config.json num_attention_heads exceeds hidden_size (4096), leaving no dimensions for each head (no head_dim given) (got 8192)',
    );
  });

  it('an absurd num_hidden_layers is refused before a layout entry is built for each layer', () => {
    // 1e9 layers used to fill the heap building the weight layout and abort the process.
    const e = errorOf(() => modelSpecFromConfig({ ...LLAMA_3_1_8B, num_hidden_layers: 1e9 }));
    expect(isAutoGlmError(e, 'model_load_failed')).toBe(true);
    expect((e as Error).message).toBe('config.json num_hidden_layers must be at most 4096 (got 1000000000)');
    expect(modelSpecFromConfig({ ...LLAMA_3_1_8B, num_hidden_layers: 126 }).weights.layers).toHaveLength(126);
  });

  it('an EOS id past vocab_size (the rows the logits cover) is refused naming eos_token_id and the vocabulary size', () => {
    // stefan-it/german-gpt2 shipped vocab_size 52000 with eos_token_id 52000: it used to load,
    // and no request could ever stop on EOS
    const e = errorOf(() => modelSpecFromConfig({ ...LLAMA_3_1_8B, eos_token_id: [128001, 128256] }));
    expect(isAutoGlmError(e, 'model_load_failed')).toBe(true);
    expect((e as Error).message).toBe(
      'config.json eos_token_id holds 128256, not below vocab_size 128256 (the rows the logits cover), so it could never be generated (got [128001,128256])',
    );
    // the last row is fine; Qwen pads vocab_size past its tokenizer, and its EOS ids are rows
    expect(modelSpecFromConfig({ ...LLAMA_3_1_8B, eos_token_id: 128255 }).eosTokenIds).toEqual([128255]);
    expect(modelSpecFromConfig(QWEN3_0_6B).eosTokenIds).toEqual([151645]);
  });

  it('a missing config.json is model_load_failed naming the path', async () => {
    const e = await loadModelSpec(join(root, 'no-such-model')).catch((x: unknown) => x);
    expect(isAutoGlmError(e, 'model_load_failed')).toBe(true);
    expect((e as Error).message).toContain(join(root, 'no-such-model', 'config.json'));
  });
});

// Abridged from published FP8 checkpoints' config.json (Qwen/Qwen3-30B-A3B-FP8; DeepSeek-V3 and
// zai-org/GLM-4.5-Air-FP8 write the same block), and from other quantization methods'.
const FP8_BLOCK = { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', weight_block_size: [128, 128] };

describe('quantization_config', () => {
  it('block-quantized FP8 is read into the spec; no quantization_config (or null) is none', () => {
    expect(modelSpecFromConfig({ ...QWEN3_30B_A3B, quantization_config: FP8_BLOCK }).quantization).toEqual({
      method: 'fp8',
      blockSize: [128, 128],
    });
    expect(modelSpecFromConfig(QWEN3_30B_A3B).quantization).toBeNull();
    expect(modelSpecFromConfig({ ...LLAMA_3_1_8B, quantization_config: null }).quantization).toBeNull();
    // fmt absent reads as e4m3 (transformers' FineGrainedFP8Config writes none); modules left
    // in bf16 need nothing: the reader goes by each tensor's dtype
    const { fmt: _fmt, ...noFmt } = FP8_BLOCK;
    expect(
      modelSpecFromConfig({
        ...LLAMA_3_1_8B,
        quantization_config: { ...noFmt, weight_block_size: [64, 32], modules_to_not_convert: ['lm_head'] },
      }).quantization,
    ).toEqual({ method: 'fp8', blockSize: [64, 32] });
    // Gemma 3 with its vision tower keeps quantization_config in the outer config
    const gemma3 = { model_type: 'gemma3', text_config: { ...GEMMA_3_1B_IT, model_type: undefined }, quantization_config: FP8_BLOCK };
    expect(modelSpecFromConfig(gemma3).quantization).toEqual({ method: 'fp8', blockSize: [128, 128] });
  });

  it('other methods, per-tensor FP8 and e5m2 are unsupported_architecture naming the key and what is supported', () => {
    const cases: [unknown, string][] = [
      [{ bits: 4, group_size: 128, desc_act: false, quant_method: 'gptq', sym: true }, 'quantization_config.quant_method "gptq"'],
      [{ quant_method: 'awq', bits: 4, group_size: 128, version: 'gemm', zero_point: true }, 'quantization_config.quant_method "awq"'],
      [{ quant_method: 'bitsandbytes', load_in_4bit: true, bnb_4bit_quant_type: 'nf4' }, 'quantization_config.quant_method "bitsandbytes"'],
      [{ quant_method: 'compressed-tensors', format: 'float-quantized' }, 'quantization_config.quant_method "compressed-tensors"'],
      [{ bits: 4 }, 'quantization_config.quant_method null'],
      [
        { quant_method: 'fp8', activation_scheme: 'static' },
        'quantization_config.weight_block_size is absent: FP8 with a scale per tensor',
      ],
      [{ ...FP8_BLOCK, fmt: 'e5m2' }, 'quantization_config.fmt "e5m2"'],
    ];
    for (const [quantization_config, key] of cases) {
      const e = errorOf(() => modelSpecFromConfig({ ...LLAMA_3_1_8B, quantization_config }));
      expect(isAutoGlmError(e, 'unsupported_architecture'), key).toBe(true);
      expect((e as Error).message).toContain(`config.json ${key}`);
      expect((e as Error).message).toContain('supported: quant_method "fp8" with fmt "e4m3" and weight_block_size');
    }
  });

  it('a malformed quantization_config or weight_block_size is model_load_failed naming it', () => {
    const cases: [unknown, string][] = [
      ['fp8', 'config.json quantization_config must be an object or null (got "fp8")'],
      [
        { ...FP8_BLOCK, weight_block_size: [128] },
        'config.json quantization_config.weight_block_size must be [rows, columns] of positive integers (got [128])',
      ],
      [{ ...FP8_BLOCK, weight_block_size: [128, 0] }, 'weight_block_size must be [rows, columns] of positive integers (got [128,0])'],
      [{ ...FP8_BLOCK, weight_block_size: '128x128' }, 'weight_block_size must be [rows, columns] of positive integers (got "128x128")'],
    ];
    for (const [quantization_config, message] of cases) {
      const e = errorOf(() => modelSpecFromConfig({ ...LLAMA_3_1_8B, quantization_config }));
      expect(isAutoGlmError(e, 'model_load_failed'), message).toBe(true);
      expect((e as Error).message).toContain(message);
    }
  });
});

describe('generation config', () => {
  it('demo-stories: EOS and default sampling', async () => {
    const g = await loadGenerationConfig(join(root, 'models/demo-stories'), { eosTokenIds: [257], bosTokenId: 256, vocabSize: 258 });
    expect(g).toMatchObject({ eosTokenIds: [257], bosTokenId: 256, doSample: true, temperature: 0.7, topP: 0.9, topK: null });
  });

  it('merges config and generation EOS ids without duplicates; missing file is fine', async () => {
    expect(generationDefaults({ eos_token_id: [2, 7] }, { eosTokenIds: [2], bosTokenId: 1, vocabSize: 32000 }).eosTokenIds).toEqual([2, 7]);
    expect(generationDefaults({ eos_token_id: 9 }, { eosTokenIds: [], bosTokenId: null, vocabSize: 32000 }).eosTokenIds).toEqual([9]);
    const g = await loadGenerationConfig(join(root, 'test'), { eosTokenIds: [3], bosTokenId: null, vocabSize: 32000 });
    expect(g.eosTokenIds).toEqual([3]);
    expect(g.temperature).toBeNull();
  });

  it('sampling defaults and EOS ids out of range or of the wrong type fail the load naming the key', async () => {
    // Each of these used to load, then fail every request's step with internal_error (or, for
    // a string temperature or a bad EOS id, be dropped without a word).
    const cases: [Record<string, unknown>, string][] = [
      [{ top_p: 0 }, 'generation_config.json top_p must be in (0, 1], got 0'],
      [{ top_p: 5 }, 'generation_config.json top_p must be in (0, 1], got 5'],
      [{ temperature: -1 }, 'generation_config.json temperature must be between 0 and 100, got -1'],
      [{ temperature: '0.7' }, 'generation_config.json temperature must be a number (got "0.7")'],
      [{ top_k: 0.5 }, 'generation_config.json top_k must be an integer >= -1'],
      [{ min_p: 3 }, 'generation_config.json min_p must be in [0, 1], got 3'],
      [{ repetition_penalty: 0 }, 'generation_config.json repetition_penalty must be in (0, 10], got 0'],
      [{ eos_token_id: ['x', -3] }, 'generation_config.json eos_token_id must be a token id or a list of them (got ["x",-3])'],
      [{ do_sample: 'yes' }, 'generation_config.json do_sample must be true or false (got "yes")'],
      // demo-stories has vocab_size 258: id 258 has no logit, so generation would never stop on it
      [{ eos_token_id: [257, 258] }, 'generation_config.json eos_token_id must be token ids below config.json vocab_size 258'],
    ];
    for (const [json, message] of cases) {
      const dir = demoCopy();
      writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 256, eos_token_id: 257, ...json }));
      const e = await loadGenerationConfig(dir, { eosTokenIds: [257], bosTokenId: 256, vocabSize: 258 }).catch((x: unknown) => x);
      expect(isAutoGlmError(e, 'model_load_failed'), message).toBe(true);
      expect((e as Error).message).toContain(message);
      // a cause would repeat the message in the server's log line ("...got 0: top_p must be...")
      expect((e as Error).cause).toBeUndefined();
    }
    // nulls are absent values, and top_k -1 / 0 disable top-k as in a request
    const ok = generationDefaults(
      { temperature: null, top_k: -1, eos_token_id: null, do_sample: null },
      { eosTokenIds: [2], bosTokenId: 1, vocabSize: 32000 },
    );
    expect(ok).toMatchObject({ temperature: null, topK: -1, eosTokenIds: [2], doSample: null });
  });
});
