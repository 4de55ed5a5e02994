/**
 * Exports a Hugging Face llama-architecture folder (llama, mistral without sliding window
 * quirks) to GGUF for llama.cpp, as its convert_hf_to_gguf.py does: llama.* hyper-
 * parameters, the tokenizer as a "gpt2" (byte-level BPE) vocabulary with merges and
 * special ids, the chat template, and the tensors under GGUF names. Q and K rows are
 * permuted per head from Hugging Face's half-split RoPE order to ggml's adjacent pairs.
 * Matrices are written in the requested dtype, 1-D tensors (norms) always in f32, as
 * llama.cpp expects.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AutoGlmError } from '../errors.js';
import { loadModelSpec, openModelWeights, type ModelSpec, type ModelWeights, type TensorRef } from '../engine/model/index.js';
import { GgmlType, gguf, writeGguf, type GgufTensorSource, type GgufValue } from './gguf.js';

export type GgufDtype = 'f32' | 'f16';

export interface ExportGgufOptions {
  dtype: GgufDtype;
  /** general.name (default: the folder name). */
  name?: string;
}

export interface ExportGgufResult {
  path: string;
  bytes: number;
  tensors: number;
}

/** Reasons a spec cannot be written as a GGUF "llama" model; empty when it can. */
export function ggufUnsupportedReasons(spec: ModelSpec): string[] {
  const reasons: string[] = [];
  if (spec.architecture !== 'llama' && spec.architecture !== 'mistral')
    reasons.push(`architecture ${spec.architecture} (only llama and mistral)`);
  if (spec.qkvBias || spec.oBias) reasons.push('attention biases');
  if (spec.qkNorm || spec.sandwichNorms || spec.fusedGateUp) reasons.push('non-llama layer structure');
  if (spec.rope.layout !== 'half' || spec.rope.rotaryDim !== spec.headDim) reasons.push('partial or interleaved RoPE');
  if (spec.rope.scaling.type !== 'none') reasons.push(`RoPE scaling ${spec.rope.scaling.type} (rope_freqs tensor not written)`);
  if (spec.activation !== 'silu') reasons.push(`activation ${spec.activation}`);
  if (spec.norm.onePlus) reasons.push('(1 + w) RMSNorm');
  return reasons;
}

export async function exportGguf(modelDir: string, outPath: string, options: ExportGgufOptions): Promise<ExportGgufResult> {
  const spec = await loadModelSpec(modelDir);
  const reasons = ggufUnsupportedReasons(spec);
  if (reasons.length > 0)
    throw new AutoGlmError('unsupported_architecture', `GGUF export supports plain llama models only; this one has: ${reasons.join(', ')}`);
  const weights = await openModelWeights(modelDir, { spec });
  try {
    const metadata = {
      ...llamaMetadata(spec, options.name ?? modelDir.split('/').filter(Boolean).pop() ?? 'model', options.dtype),
      ...(await tokenizerMetadata(modelDir, spec)),
    };
    const tensors = tensorSources(spec, weights, options.dtype);
    const bytes = await writeGguf(outPath, { metadata, tensors });
    return { path: outPath, bytes, tensors: tensors.length };
  } finally {
    await weights.close();
  }
}

function llamaMetadata(spec: ModelSpec, name: string, dtype: GgufDtype): Record<string, GgufValue> {
  return {
    'general.architecture': gguf.str('llama'),
    'general.name': gguf.str(name),
    // llama_ftype: 0 = all f32, 1 = mostly f16
    'general.file_type': gguf.u32(dtype === 'f16' ? 1 : 0),
    'general.alignment': gguf.u32(32),
    'llama.vocab_size': gguf.u32(spec.vocabSize),
    'llama.context_length': gguf.u32(spec.contextLength),
    'llama.embedding_length': gguf.u32(spec.hiddenSize),
    'llama.block_count': gguf.u32(spec.numLayers),
    'llama.feed_forward_length': gguf.u32(spec.intermediateSize),
    'llama.attention.head_count': gguf.u32(spec.numHeads),
    'llama.attention.head_count_kv': gguf.u32(spec.numKvHeads),
    'llama.attention.key_length': gguf.u32(spec.headDim),
    'llama.attention.value_length': gguf.u32(spec.headDim),
    'llama.rope.dimension_count': gguf.u32(spec.rope.rotaryDim),
    'llama.rope.freq_base': gguf.f32(spec.rope.theta),
    'llama.attention.layer_norm_rms_epsilon': gguf.f32(spec.norm.eps),
  };
}

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] };
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

async function tokenizerMetadata(dir: string, spec: ModelSpec): Promise<Record<string, GgufValue>> {
  const tokenizerPath = join(dir, 'tokenizer.json');
  let tok: TokenizerJson;
  try {
    tok = JSON.parse(await readFile(tokenizerPath, 'utf8')) as TokenizerJson;
  } catch (e) {
    throw new AutoGlmError('tokenizer_error', `cannot read ${tokenizerPath}: ${(e as Error).message}`, { cause: e });
  }
  if (tok.model?.type !== 'BPE' || !tok.model.vocab) {
    throw new AutoGlmError('tokenizer_error', `${tokenizerPath}: GGUF export needs a BPE tokenizer (got ${tok.model?.type ?? 'none'})`);
  }
  // GGUF wants one entry per id up to the model's vocabulary size; gaps become unused pads.
  const tokens: string[] = Array.from({ length: spec.vocabSize }, (_, i) => `[PAD${i}]`);
  // llama_token_type: 1 normal, 3 control, 4 user-defined, 5 unused
  const types: number[] = new Array<number>(spec.vocabSize).fill(5);
  for (const [text, id] of Object.entries(tok.model.vocab)) {
    if (id < spec.vocabSize) {
      tokens[id] = text;
      types[id] = 1;
    }
  }
  for (const added of tok.added_tokens ?? []) {
    if (added.id < spec.vocabSize) {
      tokens[added.id] = added.content;
      types[added.id] = added.special ? 3 : 4;
    }
  }
  const merges = (tok.model.merges ?? []).map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));
  const meta: Record<string, GgufValue> = {
    'tokenizer.ggml.model': gguf.str('gpt2'),
    'tokenizer.ggml.pre': gguf.str('default'),
    'tokenizer.ggml.tokens': gguf.strings(tokens),
    'tokenizer.ggml.token_type': gguf.i32s(types),
    'tokenizer.ggml.merges': gguf.strings(merges),
  };
  if (spec.bosTokenId !== null) meta['tokenizer.ggml.bos_token_id'] = gguf.u32(spec.bosTokenId);
  if (spec.eosTokenIds.length > 0) meta['tokenizer.ggml.eos_token_id'] = gguf.u32(spec.eosTokenIds[0]!);
  try {
    const config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as {
      add_bos_token?: boolean;
      chat_template?: unknown;
    };
    meta['tokenizer.ggml.add_bos_token'] = gguf.bool(config.add_bos_token === true);
    if (typeof config.chat_template === 'string') meta['tokenizer.chat_template'] = gguf.str(config.chat_template);
  } catch {
    // tokenizer_config.json is optional
  }
  return meta;
}

function tensorSources(spec: ModelSpec, weights: ModelWeights, dtype: GgufDtype): GgufTensorSource[] {
  const out: GgufTensorSource[] = [];
  const add = (ggufName: string, ref: TensorRef, permuteHeads?: number) => {
    const isMatrix = ref.shape.length >= 2;
    const type = isMatrix && dtype === 'f16' ? GgmlType.F16 : GgmlType.F32;
    out.push({
      name: ggufName,
      shape: ref.shape,
      type,
      data: async () => {
        const values = type === GgmlType.F16 ? await weights.read(ref.name, 'f16') : await weights.read(ref.name, 'f32');
        const rows = ref.shape[0]!;
        const permuted = permuteHeads ? permuteRopeRows(values, rows, values.length / rows, permuteHeads) : values;
        return new Uint8Array(permuted.buffer, permuted.byteOffset, permuted.byteLength);
      },
    });
  };
  const w = spec.weights;
  add('token_embd.weight', w.embed);
  w.layers.forEach((l, i) => {
    add(`blk.${i}.attn_norm.weight`, l.inputNorm);
    add(`blk.${i}.attn_q.weight`, l.qProj, spec.numHeads);
    add(`blk.${i}.attn_k.weight`, l.kProj, spec.numKvHeads);
    add(`blk.${i}.attn_v.weight`, l.vProj);
    add(`blk.${i}.attn_output.weight`, l.oProj);
    add(`blk.${i}.ffn_norm.weight`, l.postAttentionNorm);
    add(`blk.${i}.ffn_gate.weight`, l.gateProj!);
    add(`blk.${i}.ffn_up.weight`, l.upProj!);
    add(`blk.${i}.ffn_down.weight`, l.downProj!);
  });
  add('output_norm.weight', w.finalNorm);
  // Tied embeddings: llama.cpp falls back to token_embd when output.weight is absent.
  if (w.lmHead) add('output.weight', w.lmHead);
  return out;
}

/**
 * convert_hf_to_gguf.py's LlamaModel.permute: within each head, row a*(d/2) + i (a in
 * {0, 1}) moves to row 2i + a, turning HF's rotate_half pairs (i, i + d/2) into ggml's
 * adjacent pairs (2i, 2i + 1).
 */
export function permuteRopeRows<T extends Float32Array | Uint16Array>(values: T, rows: number, cols: number, numHeads: number): T {
  const headRows = rows / numHeads;
  const half = headRows / 2;
  const out = new (values.constructor as { new (n: number): T })(values.length);
  for (let h = 0; h < numHeads; h++) {
    for (let a = 0; a < 2; a++) {
      for (let i = 0; i < half; i++) {
        const src = (h * headRows + a * half + i) * cols;
        const dst = (h * headRows + 2 * i + a) * cols;
        out.set(values.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}
