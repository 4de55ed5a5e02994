/**
 * config.json -> ModelSpec. Keys a checkpoint omits take the defaults of the matching
 * transformers configuration class (architectures.ts), so a spec here means what
 * transformers would build from the same file.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AutoGlmError } from '../../errors.js';
import { ARCHITECTURES, type ArchitectureTraits } from './architectures.js';
import { f16BitsToNumber, float32ToBf16Bits, numberToF16Bits, toFloat32 } from './dtype-convert.js';
import { fileProblem } from './model-file.js';
import {
  SUPPORTED_ARCHITECTURES,
  type Architecture,
  type ModelSpec,
  type RopeScaling,
  type RopeSpec,
  type WeightLayout,
} from './model-spec.js';
import { quantizationFromConfig } from './quantization-config.js';
import { openModelWeights } from './sharded.js';
import { weightLayout, type DecoderNames } from './weight-names.js';

export type ModelConfigJson = Record<string, unknown>;

/**
 * The weight layout holds an entry per layer and is built before the checkpoint can
 * disprove the count, so an absurd num_hidden_layers (a typo, a corrupted file) would
 * exhaust memory. Published decoders have at most a few hundred layers.
 */
const MAX_LAYERS = 4096;
/** What the routing kernel handles (src/kernels/moe-route.ts). */
const MAX_EXPERTS = 4096;
const MAX_EXPERTS_PER_TOKEN = 32;
const MAX_EXPERT_GROUPS = 32;

/**
 * Reads and parses `<dir>/config.json`. A Gemma 3 checkpoint with its vision tower names its
 * decoder's tensors one of two ways; the weight files say which.
 */
export async function loadModelSpec(dir: string): Promise<ModelSpec> {
  const spec = modelSpecFromConfig(await readJsonFile(join(dir, 'config.json')));
  if (spec.modelType !== 'gemma3') return spec;
  const weights = await openModelWeights(dir);
  try {
    const names = GEMMA3_DECODER_NAMES.find((n) => weights.has(`${n.prefix}embed_tokens.weight`));
    return names ? { ...spec, weights: gemma3Layout(spec, names) } : spec;
  } finally {
    await weights.close();
  }
}

/**
 * Gemma3ForConditionalGeneration's decoder: language_model.model.* as published (transformers
 * 4.50), model.language_model.* as transformers >= 4.52 saves it (its checkpoint conversion
 * mapping between the two). The vision tower's tensors are not read: text only.
 */
const GEMMA3_DECODER_NAMES: DecoderNames[] = [
  { prefix: 'language_model.model.', lmHead: 'language_model.lm_head.weight' },
  { prefix: 'model.language_model.', lmHead: 'lm_head.weight' },
];

/** A Gemma 3 decoder's tensors under `names`. */
function gemma3Layout(spec: ModelSpec, names: DecoderNames): WeightLayout {
  return weightLayout({ ...spec, normNames: ARCHITECTURES.gemma3_text.normNames, names });
}

/**
 * A Gemma 3 config with a vision tower (model_type gemma3): its text_config read as a
 * gemma3_text config, with the token ids and dtype of the outer config where it has them.
 */
function gemma3TextConfig(config: ModelConfigJson): ModelConfigJson {
  const text = config['text_config'];
  if (text === null || typeof text !== 'object' || Array.isArray(text)) {
    throw new AutoGlmError(
      'model_load_failed',
      'config.json model_type "gemma3" (Gemma 3 with its vision tower) needs a text_config object',
    );
  }
  const outer: ModelConfigJson = {};
  // an FP8 checkpoint's quantization_config sits in the outer config
  for (const key of ['eos_token_id', 'bos_token_id', 'torch_dtype', 'dtype', 'quantization_config'])
    if (config[key] != null) outer[key] = config[key];
  return { ...(text as ModelConfigJson), ...outer, model_type: 'gemma3_text' };
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
  if (config['model_type'] === 'gemma3') {
    const spec = modelSpecFromConfig(gemma3TextConfig(config));
    // text only; loadModelSpec picks the other naming when the files use it
    return { ...spec, modelType: 'gemma3', weights: gemma3Layout(spec, GEMMA3_DECODER_NAMES[0]!) };
  }
  const modelType = config['model_type'];
  if (typeof modelType !== 'string' || !(SUPPORTED_ARCHITECTURES as readonly string[]).includes(modelType)) {
    throw new AutoGlmError(
      'unsupported_architecture',
      `config.json model_type ${JSON.stringify(modelType ?? null)} is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(', ')}, gemma3 (text only)`,
    );
  }
  const architecture = modelType as Architecture;
  const traits = ARCHITECTURES[architecture];
  const d = traits.defaults;
  const c = new ConfigReader(config);
  // first: a checkpoint the reader cannot turn into floats is refused whatever else it says
  const quantization = quantizationFromConfig(config);

  const shape = d.shape;
  const vocabSize = c.int('vocab_size', shape?.vocabSize);
  const hiddenSize = c.int('hidden_size', shape?.hiddenSize);
  const intermediateSize = c.int('intermediate_size', shape?.intermediateSize);
  const numLayers = c.int('num_hidden_layers', shape?.numLayers);
  if (numLayers > MAX_LAYERS) throw c.invalid('num_hidden_layers', `must be at most ${MAX_LAYERS}`);
  const numHeads = c.int('num_attention_heads', shape?.numHeads);
  const numKvHeads = c.int('num_key_value_heads', shape?.numKvHeads ?? numHeads);
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

  const { rope, localRope } = ropeSpecs(c, traits, headDim, derivedHeadDim ? 'derived' : config['head_dim'] == null ? 'default' : 'set');

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
  const contextLength = c.int('max_position_embeddings', d.contextLength);
  const torchDtype =
    typeof config['torch_dtype'] === 'string' ? config['torch_dtype'] : typeof config['dtype'] === 'string' ? config['dtype'] : null;
  const window = slidingWindow(traits, c, numLayers, contextLength);
  const moe = moeSpec(traits, c, numLayers, hiddenSize);
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
    contextLength,
    norm: { eps: c.number('rms_norm_eps', d.rmsNormEps), onePlus: traits.gemma },
    rope,
    qkvBias: bias(traits.qkvBias),
    oBias: bias(traits.oBias),
    qkNorm: traits.qkNorm === 'use_qk_norm' ? c.bool('use_qk_norm', false) : traits.qkNorm,
    sandwichNorms: traits.sandwichNorms,
    fusedGateUp: traits.fusedGateUp,
    tiedEmbeddings,
    activation: activation(traits.activationKey, c.string(traits.activationKey, d.activation), c),
    moe,
    slidingWindow: window.size,
    slidingLayers: window.layers,
    // a model with no sliding layer has no use for their RoPE
    localRope: window.layers.some((s) => s) ? localRope : null,
    attentionScale:
      d.queryPreAttnScalar === undefined ? 1 / Math.sqrt(headDim) : 1 / Math.sqrt(c.number('query_pre_attn_scalar', d.queryPreAttnScalar)),
    // only the configuration classes that define the caps (Gemma 2/3) read them
    attentionSoftcap: d.attnLogitSoftcapping === undefined ? null : c.optionalPositive('attn_logit_softcapping', d.attnLogitSoftcapping),
    finalLogitSoftcap:
      d.finalLogitSoftcapping === undefined ? null : c.optionalPositive('final_logit_softcapping', d.finalLogitSoftcapping),
    embeddingScale: traits.gemma ? roundToDtype(Math.sqrt(hiddenSize), torchDtype) : 1,
    bosTokenId: c.optionalInt('bos_token_id'),
    eosTokenIds,
    torchDtype,
    quantization,
  };
  return { ...spec, weights: weightLayout({ ...spec, normNames: traits.normNames }) };
}

/**
 * The mixture-of-experts MLPs, read the way the architecture's configuration class names
 * them (architectures.ts MoeTraits). Limits: the routing kernel (moe-route.ts) picks at
 * most 32 of at most 4096 experts, in at most 32 groups; the expert kernels (moe-matmul.ts)
 * read K, hidden_size for gate/up and moe_intermediate_size for down, as vec4s (every
 * published size is a multiple of 4).
 */
function moeSpec(traits: ArchitectureTraits, c: ConfigReader, numLayers: number, hiddenSize: number): ModelSpec['moe'] {
  const t = traits.moe;
  if (!t) return null;
  const d = traits.defaults;
  const glm = t.family === 'glm4_moe';
  const expertsKey = glm ? 'n_routed_experts' : 'num_experts';
  const numExperts = c.nonNegativeInt(expertsKey, d.numExperts ?? 0);
  if (numExperts === 0) return null;
  if (numExperts > MAX_EXPERTS) throw c.invalid(expertsKey, `must be at most ${MAX_EXPERTS}`);
  const topK = c.int('num_experts_per_tok', d.expertsPerToken);
  if (topK > numExperts || topK > MAX_EXPERTS_PER_TOKEN)
    throw c.invalid('num_experts_per_tok', `must be at most ${expertsKey} (${numExperts}) and at most ${MAX_EXPERTS_PER_TOKEN}`);
  const expertIntermediateSize = c.int('moe_intermediate_size', d.expertIntermediateSize);
  if (expertIntermediateSize % 4 !== 0) throw c.invalid('moe_intermediate_size', 'must be a multiple of 4 (the expert kernels read vec4s)');
  if (hiddenSize % 4 !== 0)
    throw c.invalid('hidden_size', 'must be a multiple of 4 in a mixture-of-experts model (the expert kernels read vec4s)');
  const common = { numExperts, topK, expertIntermediateSize, normalizeTopK: c.bool('norm_topk_prob', d.normTopKProb ?? false) };
  if (!glm) {
    const step = c.int('decoder_sparse_step', 1);
    const dense = new Set(c.intListOf('mlp_only_layers'));
    return {
      ...common,
      layers: Array.from({ length: numLayers }, (_, i) => !dense.has(i) && (i + 1) % step === 0),
      scoring: 'softmax',
      choiceBias: false,
      groups: 1,
      topkGroup: 1,
      routedScale: 1,
      // Qwen2-MoE: shared_expert_intermediate_size 0 would be an expert of no width; the
      // configuration class has no way to turn it off
      sharedIntermediateSize: t.sharedExpert ? c.int('shared_expert_intermediate_size', d.sharedExpertIntermediateSize) : 0,
      sharedGate: t.sharedExpert,
    };
  }
  const groups = c.int('n_group', 1);
  if (numExperts % groups !== 0 || numExperts / groups < 2 || groups > MAX_EXPERT_GROUPS)
    throw c.invalid(
      'n_group',
      `must divide ${expertsKey} (${numExperts}) into groups of at least 2 experts, at most ${MAX_EXPERT_GROUPS} groups`,
    );
  const topkGroup = c.int('topk_group', 1);
  if (topkGroup > groups) throw c.invalid('topk_group', `must be at most n_group (${groups})`);
  const firstDense = c.nonNegativeInt('first_k_dense_replace', d.firstKDense ?? 0);
  return {
    ...common,
    layers: Array.from({ length: numLayers }, (_, i) => i >= firstDense),
    scoring: 'sigmoid',
    choiceBias: true,
    groups,
    topkGroup,
    routedScale: c.number('routed_scaling_factor', 1),
    // n_shared_experts 0 would build a zero-width MLP in transformers: refused as nonsense
    sharedIntermediateSize: c.int('n_shared_experts', 1) * expertIntermediateSize,
    sharedGate: false,
  };
}

/**
 * The model's RoPE, and Gemma 3's for its sliding-window layers (rope_local_base_freq, no
 * scaling). transformers v5 moved rope_theta / rope_scaling / partial_rotary_factor into
 * rope_parameters, for Gemma 3 one block per layer type (full_attention, sliding_attention).
 * A value there that is not a number is an error, not a reason to fall back to the default
 * (a silently wrong theta loads and generates garbage).
 */
function ropeSpecs(
  c: ConfigReader,
  traits: ArchitectureTraits,
  headDim: number,
  headDimFrom: 'derived' | 'default' | 'set',
): { rope: RopeSpec; localRope: RopeSpec } {
  const d = traits.defaults;
  const params = c.object('rope_parameters');
  const perType = params !== null && typeof params['full_attention'] === 'object' && params['full_attention'] !== null;
  const block = (name: string): ParamBlock | null => {
    if (!perType) return params === null ? null : { json: params, path: 'rope_parameters' };
    const v = params[name];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v))
      throw new AutoGlmError('model_load_failed', `config.json rope_parameters.${name} must be an object`);
    return { json: v as Record<string, unknown>, path: `rope_parameters.${name}` };
  };
  const global = block('full_attention');
  const scalingBlock: ParamBlock | null =
    c.object('rope_scaling') !== null ? { json: c.object('rope_scaling')!, path: 'rope_scaling' } : global;
  const theta = c.number('rope_theta', (global && positiveAt(global, 'rope_theta')) ?? d.ropeTheta);
  const partial = c.number('partial_rotary_factor', (global && positiveAt(global, 'partial_rotary_factor')) ?? d.partialRotaryFactor);
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim <= 0 || rotaryDim % 2 !== 0 || rotaryDim > headDim) {
    // Either key may be at fault (an odd head_dim, a factor out of range), and either may be
    // a default: name both with the values in force.
    const from = headDimFrom === 'derived' ? ' (hidden_size / num_attention_heads)' : headDimFrom === 'default' ? ' (the default)' : '';
    throw new AutoGlmError(
      'model_load_failed',
      `config.json head_dim ${headDim}${from} x partial_rotary_factor ${partial} gives rotary dimension ${rotaryDim}; ` +
        'RoPE rotates pairs of dimensions, so it must be even and in (0, head_dim]',
    );
  }
  const rope: RopeSpec = { layout: traits.ropeLayout, rotaryDim, theta, scaling: ropeScaling(scalingBlock) };
  const local = block('sliding_attention');
  const localTheta = c.number('rope_local_base_freq', (local && positiveAt(local, 'rope_theta')) ?? d.localRopeTheta ?? theta);
  const localRope: RopeSpec =
    d.localRopeTheta === undefined ? rope : { ...rope, theta: localTheta, scaling: perType ? ropeScaling(local) : { type: 'none' } };
  return { rope, localRope };
}

/** An object-valued config key (or one nested in one) and its path, for error messages. */
interface ParamBlock {
  json: Record<string, unknown>;
  path: string;
}

/** A positive number in a block; undefined when absent or null. */
function positiveAt(block: ParamBlock, field: string): number | undefined {
  const v = block.json[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new AutoGlmError('model_load_failed', `config.json ${block.path}.${field} must be a positive number (got ${JSON.stringify(v)})`);
  }
  return v;
}

function ropeScaling(block: ParamBlock | null): RopeScaling {
  const json = block?.json ?? {};
  const type = json['rope_type'] ?? json['type'] ?? 'default';
  const num = (field: string): number => {
    const v = block && positiveAt(block, field);
    if (v === undefined || v === null)
      throw new AutoGlmError('model_load_failed', `config.json ${block?.path}.${field} must be a positive number (got null)`);
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

/**
 * The value as a tensor of the checkpoint's dtype holds it: transformers multiplies Gemma's
 * embeddings by sqrt(hidden_size) as a tensor of the hidden states' dtype.
 */
function roundToDtype(value: number, torchDtype: string | null): number {
  if (torchDtype === 'bfloat16') return toFloat32(new Uint8Array(float32ToBf16Bits(Float32Array.of(value)).buffer), 'BF16')[0]!;
  if (torchDtype === 'float16') return f16BitsToNumber(numberToF16Bits(value));
  return Math.fround(value);
}

function activation(key: string, name: string, c: ConfigReader): ModelSpec['activation'] {
  if (name === 'silu' || name === 'swish') return 'silu';
  if (name === 'gelu_pytorch_tanh' || name === 'gelu_new' || name === 'gelu_tanh') return 'gelu_tanh';
  throw c.unsupported(key, name, 'silu, gelu_pytorch_tanh');
}

/**
 * The attention window in tokens and the layers it applies to; size null for full attention
 * everywhere. A window at least as long as the context limits nothing, so it is none: that
 * also keeps windows beyond 2^32 - 1 (which the kernels' u32 params would wrap to a short
 * one) out of the kernels.
 */
function slidingWindow(
  traits: ArchitectureTraits,
  c: ConfigReader,
  numLayers: number,
  contextLength: number,
): { size: number | null; layers: boolean[] } {
  const none = { size: null, layers: new Array<boolean>(numLayers).fill(false) };
  const rule = traits.slidingWindow;
  if (rule === 'never') return none;
  if (rule === 'when_use_sliding_window' && !c.bool('use_sliding_window', false)) return none;
  const window = c.optionalInt('sliding_window') ?? (c.has('sliding_window') ? null : (traits.defaults.slidingWindow ?? null));
  if (window === null || window === 0 || window >= contextLength) return none;
  const types = c.layerTypes(numLayers);
  let layers: boolean[];
  if (types) layers = types.map((t) => t === 'sliding_attention');
  else if (rule === 'when_set') layers = new Array<boolean>(numLayers).fill(true);
  else if (rule === 'when_use_sliding_window') {
    const from = c.nonNegativeInt('max_window_layers', traits.defaults.maxWindowLayers ?? 0);
    layers = Array.from({ length: numLayers }, (_, i) => i >= from);
  } else {
    const period = c.int('sliding_window_pattern', traits.defaults.slidingWindowPattern ?? 1);
    layers = Array.from({ length: numLayers }, (_, i) => (i + 1) % period !== 0);
  }
  return layers.some((s) => s) ? { size: window, layers } : none;
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

  has(key: string): boolean {
    return key in this.config;
  }

  nonNegativeInt(key: string, fallback: number): number {
    const v = this.config[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw this.invalid(key, 'must be a non-negative integer');
    return v;
  }

  /** A positive number, null when the key says null (a feature turned off), the fallback when absent. */
  optionalPositive(key: string, fallback: number | null): number | null {
    const v = this.has(key) ? this.config[key] : fallback;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw this.invalid(key, 'must be a positive number or null');
    return v;
  }

  /** transformers >= 4.53's per-layer attention kinds, when the config lists them. */
  layerTypes(numLayers: number): ('full_attention' | 'sliding_attention')[] | null {
    const v = this.config['layer_types'];
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || v.length !== numLayers) throw this.invalid('layer_types', `must list one entry per layer (${numLayers})`);
    for (const t of v) {
      if (t !== 'full_attention' && t !== 'sliding_attention') {
        throw this.unsupported('layer_types', String(t), 'full_attention, sliding_attention');
      }
    }
    return v as ('full_attention' | 'sliding_attention')[];
  }

  optionalInt(key: string): number | null {
    const v = this.config[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw this.invalid(key, 'must be a non-negative integer or null');
    return v;
  }

  /** A list of non-negative integers (layer indices); empty when absent or null. */
  intListOf(key: string): number[] {
    const v = this.config[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < 0))
      throw this.invalid(key, 'must be a list of layer indices');
    return v as number[];
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

  object(key: string): Record<string, unknown> | null {
    const v = this.config[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) throw this.invalid(key, 'must be an object or null');
    return v as Record<string, unknown>;
  }
}
