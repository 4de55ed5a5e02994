/**
 * Writes a LoRA adapter in Hugging Face PEFT's layout (adapter_config.json,
 * adapter_model.safetensors) for a base model spec, from a seed: what tests and benchmarks
 * load through the same reader a real adapter goes through. B is not zero (PEFT initialises
 * it so, training moves it): the adapter visibly changes the model's output.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, loraModuleShape, type LoraModule } from '../engine/lora/peft-adapter.js';
import type { ModelSpec } from '../engine/model/model-spec.js';
import { writeSafetensors, type TensorToWrite, type WriteDtype } from './safetensors-writer.js';
import { SeededRandom, seedFor } from './seeded-random.js';

export interface GenerateLoraOptions {
  rank?: number;
  alpha?: number;
  /** Default: q_proj, k_proj, v_proj, o_proj and the MLP's projections (attention only for a mixture-of-experts model). */
  targetModules?: LoraModule[];
  /** Only these layers get tensors (PEFT's layers_to_transform). */
  layers?: number[];
  seed?: number;
  dtype?: WriteDtype;
  useRslora?: boolean;
  /** Half-width of B's uniform values; A's is 1 / sqrt(in features). */
  bScale?: number;
  /** Extra adapter_config.json keys (tests of refusals). */
  extraConfig?: Record<string, unknown>;
}

const ATTENTION_MODULES: readonly LoraModule[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];

export async function generateLoraAdapter(dir: string, spec: ModelSpec, options: GenerateLoraOptions = {}): Promise<void> {
  const rank = options.rank ?? 8;
  const seed = options.seed ?? 7;
  // a mixture-of-experts model's MLPs take no adapter (loraModuleShape)
  const mlp: LoraModule[] = spec.moe ? [] : spec.fusedGateUp ? ['gate_up_proj', 'down_proj'] : ['gate_proj', 'up_proj', 'down_proj'];
  const modules = options.targetModules ?? ['q_proj', 'k_proj', 'v_proj', 'o_proj', ...mlp];
  const layers = options.layers ?? Array.from({ length: spec.numLayers }, (_, l) => l);
  await mkdir(dir, { recursive: true });
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: 'generated',
    r: rank,
    lora_alpha: options.alpha ?? 2 * rank,
    lora_dropout: 0,
    target_modules: modules,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: options.useRslora ?? false,
    use_dora: false,
    modules_to_save: null,
    ...(options.layers ? { layers_to_transform: options.layers } : {}),
    ...options.extraConfig,
  };
  await writeFile(join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  const tensors: TensorToWrite[] = [];
  for (const l of layers) {
    for (const m of modules) {
      const shape = loraModuleShape(spec, m);
      if (!shape) throw new RangeError(`${m} does not exist in a ${spec.modelType} model`);
      const { outFeatures: out, inFeatures: inF } = shape;
      const part = ATTENTION_MODULES.includes(m) ? 'self_attn' : 'mlp';
      const base = `base_model.model.model.layers.${l}.${part}.${m}`;
      tensors.push({ name: `${base}.lora_A.weight`, shape: [rank, inF] }, { name: `${base}.lora_B.weight`, shape: [out, rank] });
    }
  }
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, options.dtype ?? 'f32', (t) => {
    const rng = new SeededRandom(seedFor(seed, t.name));
    const n = t.shape[0]! * t.shape[1]!;
    const isA = t.name.includes('lora_A');
    return rng.fillUniform(new Float32Array(n), 0, isA ? 1 / Math.sqrt(t.shape[1]!) : (options.bScale ?? 0.05));
  });
}
