/**
 * Reads a LoRA adapter saved by Hugging Face PEFT (`save_pretrained`): adapter_config.json
 * and adapter_model.safetensors, tensors named
 * `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` ([r, in]) and `..lora_B.weight`
 * ([out, r]). A layer's projection W becomes W + scale * B A, scale = lora_alpha / r
 * (lora_alpha / sqrt(r) with use_rslora), which is folded into B here.
 *
 * What the GPU path cannot apply exactly is refused by name rather than dropped: DoRA,
 * trained biases, modules_to_save (whole replaced modules such as lm_head), LoRA on the
 * embeddings or the LM head, per-module rank or alpha patterns, GPT-2-style fan_in_fan_out.
 */
import { join } from 'node:path';
import { AutoGlmError, isAutoGlmError } from '../../errors.js';
import { readJsonFile } from '../model/config.js';
import type { ModelSpec } from '../model/model-spec.js';
import { openWeightsFile, type ModelWeights } from '../model/sharded.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** The projections a LoRA may target: the attention's and the MLP's (GLM's fused gate_up_proj too). */
export const LORA_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'gate_up_proj', 'down_proj'] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

/** One projection's update: W + B A, the scale folded into b. */
export interface LoraPair {
  /** f32 [rank, inFeatures]. */
  a: Float32Array;
  /** f32 [outFeatures, rank], multiplied by the adapter's scale. */
  b: Float32Array;
  rank: number;
}

export interface LoraAdapter {
  name: string;
  dir: string;
  /** adapter_config.json's r, which every projection of it has (rank_pattern is refused). */
  rank: number;
  /** lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora. */
  scale: number;
  /** The modules it holds tensors for. */
  modules: LoraModule[];
  /** Per layer, the projections it changes (a layer it skips, layers_to_transform, has none). */
  layers: Map<LoraModule, LoraPair>[];
  /** Parameters (A and B values). */
  parameterCount: number;
}

/** Adapters of larger rank are refused: every slot is padded to the largest rank loaded. */
export const MAX_LORA_RANK = 256;

// the decoder's layers: model.layers, or nested in a multimodal model as Gemma 3's
// (language_model.model.layers as published, model.language_model.layers as transformers >= 4.52 names it)
const KEY =
  /^(?:base_model\.model\.)?(?:model\.|language_model\.model\.|model\.language_model\.)layers\.(\d+)\.(?:self_attn|mlp)\.([a-z_]+)\.lora_([AB])\.weight$/;

function refuse(dir: string, message: string): AutoGlmError {
  return new AutoGlmError('model_load_failed', `LoRA adapter ${dir}: ${message}`);
}

/** In and out features of a module under the base model's shapes; null where the model has no such module. */
export function loraModuleShape(spec: ModelSpec, module: LoraModule): { inFeatures: number; outFeatures: number } | null {
  const H = spec.hiddenSize;
  const I = spec.intermediateSize;
  const q = spec.numHeads * spec.headDim;
  const kv = spec.numKvHeads * spec.headDim;
  switch (module) {
    case 'q_proj':
      return { inFeatures: H, outFeatures: q };
    case 'k_proj':
    case 'v_proj':
      return { inFeatures: H, outFeatures: kv };
    case 'o_proj':
      return { inFeatures: q, outFeatures: H };
    case 'gate_proj':
    case 'up_proj':
      return spec.fusedGateUp || spec.moe ? null : { inFeatures: H, outFeatures: I };
    case 'gate_up_proj':
      return spec.fusedGateUp ? { inFeatures: H, outFeatures: 2 * I } : null;
    case 'down_proj':
      return spec.moe ? null : { inFeatures: I, outFeatures: H };
  }
}

/** Reads and checks a PEFT LoRA folder against the base model it is meant for. */
export async function loadLoraAdapter(name: string, dir: string, spec: ModelSpec): Promise<LoraAdapter> {
  const config = await readJsonFile(join(dir, ADAPTER_CONFIG_FILE)).catch((e: unknown) => {
    throw refuse(dir, isAutoGlmError(e) ? e.message : String(e));
  });
  const { rank: configRank, scale } = checkConfig(dir, config as Record<string, unknown>);
  let weights: ModelWeights;
  try {
    weights = await openWeightsFile(join(dir, ADAPTER_WEIGHTS_FILE));
  } catch (e) {
    throw refuse(dir, `${ADAPTER_WEIGHTS_FILE}: ${(e as Error).message}`);
  }
  try {
    const found = new Map<string, { a?: string; b?: string; layer: number; module: LoraModule }>();
    for (const key of weights.tensorNames) {
      const m = KEY.exec(key);
      if (!m)
        throw refuse(
          dir,
          `tensor "${key}" is not a LoRA A or B matrix of a layer's attention or MLP projection (embeddings, lm_head, DoRA magnitudes and biases are not supported)`,
        );
      const layer = Number(m[1]);
      const module = m[2] as LoraModule;
      if (!(LORA_MODULES as readonly string[]).includes(module))
        throw refuse(dir, `tensor "${key}": ${module} is not a projection LoRA can target here (${LORA_MODULES.join(', ')})`);
      if (layer >= spec.numLayers) throw refuse(dir, `tensor "${key}": the base model has ${spec.numLayers} layers`);
      const id = `${layer}.${module}`;
      const entry = found.get(id) ?? { layer, module };
      if (m[3] === 'A') entry.a = key;
      else entry.b = key;
      found.set(id, entry);
    }
    if (found.size === 0) throw refuse(dir, `${ADAPTER_WEIGHTS_FILE} holds no LoRA tensors`);
    const layers: Map<LoraModule, LoraPair>[] = Array.from({ length: spec.numLayers }, () => new Map());
    const modules = new Set<LoraModule>();
    let parameterCount = 0;
    for (const { a, b, layer, module } of found.values()) {
      if (!a || !b) throw refuse(dir, `layer ${layer} ${module} has lora_${a ? 'A' : 'B'} without lora_${a ? 'B' : 'A'}`);
      const shape = loraModuleShape(spec, module);
      if (!shape)
        throw refuse(
          dir,
          spec.moe
            ? `${module}: this ${spec.modelType} model's MLPs are mixtures of experts, which LoRA adapters cannot target here (attention projections only)`
            : `${module} does not exist in this ${spec.modelType} model (${spec.fusedGateUp ? 'gate_up_proj is fused' : 'gate_proj and up_proj are separate'})`,
        );
      const ai = weights.info(a);
      const bi = weights.info(b);
      const r = ai.shape[0] ?? 0;
      if (ai.shape.length !== 2 || ai.shape[1] !== shape.inFeatures || r < 1)
        throw refuse(dir, `"${a}" has shape [${ai.shape.join(', ')}], expected [r, ${shape.inFeatures}] for the base model`);
      if (bi.shape.length !== 2 || bi.shape[0] !== shape.outFeatures || bi.shape[1] !== r)
        throw refuse(
          dir,
          `"${b}" has shape [${bi.shape.join(', ')}], expected [${shape.outFeatures}, ${r}] for the base model and its lora_A`,
        );
      if (r !== configRank) throw refuse(dir, `layer ${layer} ${module} has rank ${r}, adapter_config.json r is ${configRank}`);
      const bValues = await weights.read(b, 'f32');
      for (let i = 0; i < bValues.length; i++) bValues[i] = bValues[i]! * scale;
      layers[layer]!.set(module, { a: await weights.read(a, 'f32'), b: bValues, rank: r });
      modules.add(module);
      parameterCount += r * (shape.inFeatures + shape.outFeatures);
    }
    return { name, dir, rank: configRank, scale, modules: LORA_MODULES.filter((m) => modules.has(m)), layers, parameterCount };
  } catch (e) {
    if (isAutoGlmError(e) && e.message.startsWith('LoRA adapter')) throw e;
    throw refuse(dir, (e as Error).message);
  } finally {
    await weights.close();
  }
}

function checkConfig(dir: string, c: Record<string, unknown>): { rank: number; scale: number } {
  const peftType = c['peft_type'];
  if (peftType !== undefined && peftType !== 'LORA') throw refuse(dir, `peft_type ${JSON.stringify(peftType)} is not LORA`);
  const r = c['r'];
  if (!(typeof r === 'number' && Number.isInteger(r) && r >= 1 && r <= MAX_LORA_RANK))
    throw refuse(dir, `adapter_config.json r must be an integer in [1, ${MAX_LORA_RANK}], got ${JSON.stringify(r)}`);
  const alpha = c['lora_alpha'] ?? 8;
  if (!(typeof alpha === 'number' && Number.isFinite(alpha)))
    throw refuse(dir, `adapter_config.json lora_alpha must be a number, got ${JSON.stringify(alpha)}`);
  const unsupported: [string, boolean][] = [
    ['use_dora', c['use_dora'] === true],
    ['fan_in_fan_out', c['fan_in_fan_out'] === true],
    ['bias', c['bias'] !== undefined && c['bias'] !== 'none'],
    ['modules_to_save', Array.isArray(c['modules_to_save']) && c['modules_to_save'].length > 0],
    ['rank_pattern', isNonEmptyObject(c['rank_pattern'])],
    ['alpha_pattern', isNonEmptyObject(c['alpha_pattern'])],
  ];
  for (const [key, bad] of unsupported) {
    if (bad)
      throw refuse(
        dir,
        `adapter_config.json ${key} ${JSON.stringify(c[key])} is not supported (only plain LoRA on the attention and MLP projections)`,
      );
  }
  const rslora = c['use_rslora'] === true;
  return { rank: r, scale: rslora ? alpha / Math.sqrt(r) : alpha / r };
}

function isNonEmptyObject(v: unknown): boolean {
  return v !== null && typeof v === 'object' && Object.keys(v).length > 0;
}

/** An adapter that changes nothing (rank 1, no projections): what a slot holds to compile the kernels before any adapter is loaded. */
export function emptyLoraAdapter(name: string, numLayers: number): LoraAdapter {
  return { name, dir: '', rank: 1, scale: 1, modules: [], layers: Array.from({ length: numLayers }, () => new Map()), parameterCount: 0 };
}
