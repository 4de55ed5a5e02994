/**
 * Hugging Face tensor names and shapes for a spec's weights. All supported architectures
 * share the Llama naming (model.layers.N.self_attn.q_proj.weight, ...) but for the sandwich
 * norms (GLM-4's and Gemma's names differ); the traits decide which optional tensors exist.
 */
import type { LayerWeights, MoeSpec, TensorRef, WeightLayout } from './model-spec.js';

export interface WeightLayoutOptions {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  qkvBias: boolean;
  oBias: boolean;
  qkNorm: boolean;
  sandwichNorms: boolean;
  /** Names of the norms around attention and MLP: Llama's (and GLM-4's post-norms) or Gemma 2/3's. */
  normNames: 'llama' | 'gemma';
  fusedGateUp: boolean;
  tiedEmbeddings: boolean;
  /**
   * Mixture-of-experts layers: mlp.gate (+ GLM-4.5's mlp.gate.e_score_correction_bias),
   * mlp.experts.E.{gate,up,down}_proj, and the shared expert: Qwen2-MoE's mlp.shared_expert
   * with mlp.shared_expert_gate, GLM-4.5's mlp.shared_experts.
   */
  moe?: Pick<MoeSpec, 'numExperts' | 'expertIntermediateSize' | 'layers' | 'choiceBias' | 'sharedIntermediateSize' | 'sharedGate'> | null;
  /** Where the decoder's tensors live (default DECODER_NAMES: model.*, lm_head.weight). */
  names?: DecoderNames;
}

/** The decoder's name prefix and the LM head's name: a multimodal checkpoint nests the decoder. */
export interface DecoderNames {
  /** Before layers.N..., embed_tokens and norm: "model." */
  prefix: string;
  lmHead: string;
}

export const DECODER_NAMES: DecoderNames = { prefix: 'model.', lmHead: 'lm_head.weight' };

export function weightLayout(o: WeightLayoutOptions): WeightLayout {
  const H = o.hiddenSize;
  const I = o.intermediateSize;
  const qDim = o.numHeads * o.headDim;
  const kvDim = o.numKvHeads * o.headDim;
  const ref = (name: string, ...shape: number[]): TensorRef => ({ name, shape });
  const names = o.names ?? DECODER_NAMES;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < o.numLayers; l++) {
    const p = `${names.prefix}layers.${l}.`;
    const layer: LayerWeights = {
      inputNorm: ref(`${p}input_layernorm.weight`, H),
      qProj: ref(`${p}self_attn.q_proj.weight`, qDim, H),
      kProj: ref(`${p}self_attn.k_proj.weight`, kvDim, H),
      vProj: ref(`${p}self_attn.v_proj.weight`, kvDim, H),
      oProj: ref(`${p}self_attn.o_proj.weight`, H, qDim),
      // Gemma 2/3 call the pre-MLP norm pre_feedforward_layernorm and use
      // post_attention_layernorm for the attention output's post-norm
      postAttentionNorm: ref(`${p}${o.normNames === 'gemma' ? 'pre_feedforward' : 'post_attention'}_layernorm.weight`, H),
    };
    if (o.qkvBias) {
      layer.qBias = ref(`${p}self_attn.q_proj.bias`, qDim);
      layer.kBias = ref(`${p}self_attn.k_proj.bias`, kvDim);
      layer.vBias = ref(`${p}self_attn.v_proj.bias`, kvDim);
    }
    if (o.oBias) layer.oBias = ref(`${p}self_attn.o_proj.bias`, H);
    if (o.qkNorm) {
      layer.qNorm = ref(`${p}self_attn.q_norm.weight`, o.headDim);
      layer.kNorm = ref(`${p}self_attn.k_norm.weight`, o.headDim);
    }
    if (o.sandwichNorms) {
      const gemma = o.normNames === 'gemma';
      layer.postSelfAttnNorm = ref(`${p}${gemma ? 'post_attention' : 'post_self_attn'}_layernorm.weight`, H);
      layer.postMlpNorm = ref(`${p}${gemma ? 'post_feedforward' : 'post_mlp'}_layernorm.weight`, H);
    }
    if (o.moe?.layers[l]) {
      const { numExperts: E, expertIntermediateSize: EI } = o.moe;
      const expert = (e: number, proj: string, ...shape: number[]) => ref(`${p}mlp.experts.${e}.${proj}.weight`, ...shape);
      layer.router = ref(`${p}mlp.gate.weight`, E, H);
      layer.expertGate = Array.from({ length: E }, (_, e) => expert(e, 'gate_proj', EI, H));
      layer.expertUp = Array.from({ length: E }, (_, e) => expert(e, 'up_proj', EI, H));
      layer.expertDown = Array.from({ length: E }, (_, e) => expert(e, 'down_proj', H, EI));
      if (o.moe.choiceBias) layer.routerBias = ref(`${p}mlp.gate.e_score_correction_bias`, E);
      const SI = o.moe.sharedIntermediateSize;
      if (SI > 0) {
        // Qwen2-MoE's one gated shared expert, GLM-4.5's n_shared_experts fused into one MLP
        const shared = `${p}mlp.${o.moe.sharedGate ? 'shared_expert' : 'shared_experts'}.`;
        layer.sharedGateProj = ref(`${shared}gate_proj.weight`, SI, H);
        layer.sharedUpProj = ref(`${shared}up_proj.weight`, SI, H);
        layer.sharedDownProj = ref(`${shared}down_proj.weight`, H, SI);
        if (o.moe.sharedGate) layer.sharedExpertGate = ref(`${p}mlp.shared_expert_gate.weight`, 1, H);
      }
    } else {
      layer.downProj = ref(`${p}mlp.down_proj.weight`, H, I);
      if (o.fusedGateUp) layer.gateUpProj = ref(`${p}mlp.gate_up_proj.weight`, 2 * I, H);
      else {
        layer.gateProj = ref(`${p}mlp.gate_proj.weight`, I, H);
        layer.upProj = ref(`${p}mlp.up_proj.weight`, I, H);
      }
    }
    layers.push(layer);
  }
  const layout: WeightLayout = {
    embed: ref(`${names.prefix}embed_tokens.weight`, o.vocabSize, H),
    layers,
    finalNorm: ref(`${names.prefix}norm.weight`, H),
  };
  if (!o.tiedEmbeddings) layout.lmHead = ref(names.lmHead, o.vocabSize, H);
  return layout;
}
