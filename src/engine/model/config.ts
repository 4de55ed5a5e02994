/**
 * config.json -> ModelSpec. Keys a checkpoint omits take the defaults of the matching
 * transformers configuration class (architectures.ts), so a spec here means what
 * transformers would build from the same file.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AutoGlmError } from '../../errors.js';
import { ARCHITECTURES } from './architectures.js';
import { fileProblem } from './model-file.js';
import { SUPPORTED_ARCHITECTURES, type Architecture, type ModelSpec, type RopeScaling } from './model-spec.js';
import { weightLayout } from './weight-names.js';

export type ModelConfigJson = Record<string, unknown>;

/**
 * The weight layout holds an entry per layer and is built before the checkpoint can
 * disprove the count, so an absurd num_hidden_layers (a typo, a corrupted file) would
 * exhaust memory. Published decoders have at most a few hundred layers.
 */
const MAX_LAYERS = 4096;

/** Reads and parses `<dir>/config.json`. */
export async function loadModelSpec(dir: string): Promise<ModelSpec> {
  return modelSpecFromConfig(await readJsonFile(join(dir, 'config.json')));
}

export async function readJsonFile(file: string): Promise<ModelConfigJson> {
  const problem = await fileProblem(file);
  if (problem) throw new AutoGlmError('model_load_failed', `cannot read ${file}: it ${problem.problem}`);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new AutoGlmError('model_load_failed', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new AutoGlmError('model_load_failed', `${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new AutoGlmError('model_load_failed', `${file} must hold a JSON object`);
  }
  return json as ModelConfigJson;
}

export function modelSpecFromConfig(config: ModelConfigJson): ModelSpec {
  const modelType = config['model_type'];
  if (typeof modelType !== 'string' || !(SUPPORTED_ARCHITECTURES as readonly string[]).includes(modelType)) {
    throw new AutoGlmError(
      'unsupported_architecture',
      `config.json model_type ${JSON.stringify(modelType ?? null)} is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`,
    );
  }
  const architecture = modelType as Architecture;
  const traits = ARCHITECTURES[architecture];
  const d = traits.defaults;
  const c = new ConfigReader(config);

  const vocabSize = c.int('vocab_size');
  const hiddenSize = c.int('hidden_size');
  const intermediateSize = c.int('intermediate_size');
  const numLayers = c.int('num_hidden_layers');
  if (numLayers > MAX_LAYERS) throw c.invalid('num_hidden_layers', `must be at most ${MAX_LAYERS}`);
  const numHeads = c.int('num_attention_heads');
  const numKvHeads = c.int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw c.invalid('num_key_value_heads', `must divide num_attention_heads (${numHeads})`);
  }
  // Without head_dim, transformers divides hidden_size by the heads; blame those keys, not
  // the head_dim the file does not have, when that leaves nothing.
  const derivedHeadDim = config['head_dim'] == null && d.headDim === undefined;
  if (derivedHeadDim && numHeads > hiddenSize) {
    throw c.invalid('num_attention_heads', `exceeds hidden_size (${hiddenSize}), leaving no dimensions for each head (no head_dim given)`);
  }
  const headDim = c.int('head_dim', d.headDim ?? Math.floor(hiddenSize / numHeads));

  // transformers v5 moved rope_theta / rope_scaling / partial_rotary_factor into rope_parameters.
  // A value there that is not a number is an error, not a reason to fall back to the default
  // (a silently wrong theta loads and generates garbage).
  const ropeScalingKey = c.object('rope_scaling') !== null ? 'rope_scaling' : 'rope_parameters';
  const theta = c.number('rope_theta', c.nestedNumber('rope_parameters', 'rope_theta') ?? d.ropeTheta);
  const partial = c.number('partial_rotary_factor', c.nestedNumber('rope_parameters', 'partial_rotary_factor') ?? d.partialRotaryFactor);
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim <= 0 || rotaryDim % 2 !== 0 || rotaryDim > headDim) {
    // Either key may be at fault (an odd head_dim, a factor out of range), and either may be
    // a default: name both with the values in force.
    const headDimFrom = derivedHeadDim ? ' (hidden_size / num_attention_heads)' : config['head_dim'] == null ? ' (the default)' : '';
    throw new AutoGlmError(
      'model_load_failed',
      `config.json head_dim ${headDim}${headDimFrom} x partial_rotary_factor ${partial} gives rotary dimension ${rotaryDim}; ` +
        'RoPE rotates pairs of dimensions, so it must be even and in (0, head_dim]',
    );
  }

  const attentionBias = c.bool('attention_bias', d.attentionBias);
  const bias = (rule: boolean | 'attention_bias'): boolean => (rule === 'attention_bias' ? attentionBias : rule);
  if (c.bool('mlp_bias', false)) {
    throw new AutoGlmError('unsupported_architecture', 'config.json mlp_bias=true (biases on MLP projections) is not supported');
  }

  const tiedEmbeddings = c.bool('tie_word_embeddings', d.tieWordEmbeddings);
  const eosTokenIds = c.intList('eos_token_id');
  // The logits cover the embedding's vocab_size rows: an EOS id past them can never be
  // sampled, so generation would run to max_tokens (transformers fails its embedding lookup).
  // Added tokens past vocab_size in tokenizer.json do not make it reachable.
  const unreachableEos = eosTokenIds.find((id) => id >= vocabSize);
  if (unreachableEos !== undefined)
    throw c.invalid(
      'eos_token_id',
      `holds ${unreachableEos}, not below vocab_size ${vocabSize} (the rows the logits cover), so it could never be generated`,
    );
  const spec: Omit<ModelSpec, 'weights'> = {
    architecture,
    modelType,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    contextLength: c.int('max_position_embeddings', d.contextLength),
    norm: { eps: c.number('rms_norm_eps', d.rmsNormEps), onePlus: false },
    rope: { layout: traits.ropeLayout, rotaryDim, theta, scaling: ropeScaling(ropeScalingKey, c) },
    qkvBias: bias(traits.qkvBias),
    oBias: bias(traits.oBias),
    qkNorm: traits.qkNorm,
    sandwichNorms: traits.sandwichNorms,
    fusedGateUp: traits.fusedGateUp,
    tiedEmbeddings,
    activation: activation(c.string('hidden_act', 'silu'), c),
    slidingWindow: slidingWindow(traits.slidingWindow, c, c.int('max_position_embeddings', d.contextLength)),
    attentionScale: 1 / Math.sqrt(headDim),
    bosTokenId: c.optionalInt('bos_token_id'),
    eosTokenIds,
    torchDtype:
      typeof config['torch_dtype'] === 'string' ? config['torch_dtype'] : typeof config['dtype'] === 'string' ? config['dtype'] : null,
  };
  return { ...spec, weights: weightLayout(spec) };
}

/** `key` is rope_scaling, or rope_parameters (transformers v5) when rope_scaling is absent. */
function ropeScaling(key: 'rope_scaling' | 'rope_parameters', c: ConfigReader): RopeScaling {
  const json = c.object(key) ?? {};
  const type = json['rope_type'] ?? json['type'] ?? 'default';
  const num = (field: string): number => {
    const v = c.nestedNumber(key, field);
    if (v === undefined) throw new AutoGlmError('model_load_failed', `config.json ${key}.${field} must be a positive number (got null)`);
    return v;
  };
  switch (type) {
    case 'default':
      return { type: 'none' };
    case 'linear':
      return { type: 'linear', factor: num('factor') };
    case 'llama3':
      return {
        type: 'llama3',
        factor: num('factor'),
        lowFreqFactor: num('low_freq_factor'),
        highFreqFactor: num('high_freq_factor'),
        originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
      };
    default:
      throw new AutoGlmError(
        'unsupported_architecture',
        `config.json rope scaling type ${JSON.stringify(type)} is not supported; supported: default, linear, llama3`,
      );
  }
}

function activation(name: string, c: ConfigReader): ModelSpec['activation'] {
  if (name === 'silu' || name === 'swish') return 'silu';
  if (name === 'gelu_pytorch_tanh' || name === 'gelu_new' || name === 'gelu_tanh') return 'gelu_tanh';
  throw c.unsupported('hidden_act', name, 'silu, gelu_pytorch_tanh');
}

/**
 * The attention window in tokens, or null for full attention. A window at least as long as
 * the context limits nothing, so it is none: that also keeps windows beyond 2^32 - 1 (which
 * the kernels' u32 params would wrap to a short one) out of the kernels.
 */
function slidingWindow(rule: 'never' | 'when_set' | 'when_use_sliding_window', c: ConfigReader, contextLength: number): number | null {
  if (rule === 'never') return null;
  if (rule === 'when_use_sliding_window' && !c.bool('use_sliding_window', false)) return null;
  const window = c.optionalInt('sliding_window');
  return window !== null && window < contextLength ? window : null;
}

/** Typed access to config keys with errors that name the key. */
class ConfigReader {
  constructor(private readonly config: ModelConfigJson) {}

  invalid(key: string, why: string): AutoGlmError {
    return new AutoGlmError('model_load_failed', `config.json ${key} ${why} (got ${JSON.stringify(this.config[key] ?? null)})`);
  }

  unsupported(key: string, value: string, supported: string): AutoGlmError {
    return new AutoGlmError(
      'unsupported_architecture',
      `config.json ${key} ${JSON.stringify(value)} is not supported; supported: ${supported}`,
    );
  }

  int(key: string, fallback?: number): number {
    const v = this.config[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw this.invalid(key, 'must be a positive integer');
    return v;
  }

  optionalInt(key: string): number | null {
    const v = this.config[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw this.invalid(key, 'must be a non-negative integer or null');
    return v;
  }

  intList(key: string): number[] {
    const v = this.config[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const x of list)
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0) throw this.invalid(key, 'must be a token id or a list of them');
    return list as number[];
  }

  number(key: string, fallback: number): number {
    const v = this.config[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw this.invalid(key, 'must be a positive number');
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.config[key] ?? fallback;
    if (typeof v !== 'boolean') throw this.invalid(key, 'must be true or false');
    return v;
  }

  string(key: string, fallback: string): string {
    const v = this.config[key] ?? fallback;
    if (typeof v !== 'string') throw this.invalid(key, 'must be a string');
    return v;
  }

  /** A number inside an object-valued key (rope_parameters.rope_theta); undefined when absent or null. */
  nestedNumber(parent: string, key: string): number | undefined {
    const v = this.object(parent)?.[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new AutoGlmError('model_load_failed', `config.json ${parent}.${key} must be a positive number (got ${JSON.stringify(v)})`);
    }
    return v;
  }

  object(key: string): Record<string, unknown> | null {
    const v = this.config[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) throw this.invalid(key, 'must be an object or null');
    return v as Record<string, unknown>;
  }
}
