/**
 * Hugging Face tensor names and shapes for a spec's weights. All supported architectures
 * share the Llama naming (model.layers.N.self_attn.q_proj.weight, ...); the traits only
 * decide which optional tensors exist.
 */
import type { LayerWeights, TensorRef, WeightLayout } from './model-spec.js';

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
  fusedGateUp: boolean;
  tiedEmbeddings: boolean;
}

export function weightLayout(o: WeightLayoutOptions): WeightLayout {
  const H = o.hiddenSize;
  const I = o.intermediateSize;
  const qDim = o.numHeads * o.headDim;
  const kvDim = o.numKvHeads * o.headDim;
  const ref = (name: string, ...shape: number[]): TensorRef => ({ name, shape });
  const layers: LayerWeights[] = [];
  for (let l = 0; l < o.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const layer: LayerWeights = {
      inputNorm: ref(`${p}input_layernorm.weight`, H),
      qProj: ref(`${p}self_attn.q_proj.weight`, qDim, H),
      kProj: ref(`${p}self_attn.k_proj.weight`, kvDim, H),
      vProj: ref(`${p}self_attn.v_proj.weight`, kvDim, H),
      oProj: ref(`${p}self_attn.o_proj.weight`, H, qDim),
      postAttentionNorm: ref(`${p}post_attention_layernorm.weight`, H),
      downProj: ref(`${p}mlp.down_proj.weight`, H, I),
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
      layer.postSelfAttnNorm = ref(`${p}post_self_attn_layernorm.weight`, H);
      layer.postMlpNorm = ref(`${p}post_mlp_layernorm.weight`, H);
    }
    if (o.fusedGateUp) layer.gateUpProj = ref(`${p}mlp.gate_up_proj.weight`, 2 * I, H);
    else {
      layer.gateProj = ref(`${p}mlp.gate_proj.weight`, I, H);
      layer.upProj = ref(`${p}mlp.up_proj.weight`, I, H);
    }
    layers.push(layer);
  }
  const layout: WeightLayout = {
    embed: ref('model.embed_tokens.weight', o.vocabSize, H),
    layers,
    finalNorm: ref('model.norm.weight', H),
  };
  if (!o.tiedEmbeddings) layout.lmHead = ref('lm_head.weight', o.vocabSize, H);
  return layout;
}
