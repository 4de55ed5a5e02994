/**
 * A model folder whose greedy output is written in advance, for tests that need a model to
 * say something exact (a tool call) through the real loader, engine and server. It is a
 * real Llama checkpoint with hand-set weights:
 * - every attention and MLP projection is zero, so the residual stream at each position is
 *   the current token's embedding, and the next token depends on the current one alone;
 * - each scripted token's embedding is a unit vector in a hidden dimension of its own
 *   (other tokens embed to zero);
 * - the LM head gives each scripted token's successor a logit of SUCCESSOR_WEIGHT x
 *   sqrt(hidden) (the final RMSNorm scales a unit vector by sqrt(hidden)) and every other
 *   token 0, so the successor wins greedily and, at any temperature, all but surely.
 * Script pieces become single tokens: a byte, one of the byte-level test tokenizer's
 * specials, or an added (non-special) token, so a piece such as `<tool_call>` or a whole
 * JSON object is one token and a successor table over tokens is a script over text.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { modelSpecFromConfig } from '../engine/model/config.js';
import { listWeights, type ModelSpec, type TensorRef } from '../engine/model/model-spec.js';
import { byteBpeTokenizer } from './byte-bpe-tokenizer.js';
import { writeSafetensors } from './safetensors-writer.js';

/** One chain: once the prompt ends in `trigger`, greedy decoding emits `pieces` in order. */
export interface Script {
  /** A piece the prompt ends with: '\n' ends the generation prompt of SCRIPTED_CHAT_TEMPLATE. */
  trigger: string;
  /** The output, one token per piece; end with SCRIPT_END to finish with 'stop'. */
  pieces: string[];
}

export interface ScriptedModelOptions {
  scripts: Script[];
  /** Default SCRIPTED_CHAT_TEMPLATE. */
  chatTemplate?: string;
  /** Default 2048. */
  contextLength?: number;
}

export interface ScriptedModel {
  dir: string;
  /** The token id of each script piece (and trigger). */
  tokenIds: ReadonlyMap<string, number>;
}

/** The end-of-turn token (an EOS id in generation_config.json): a script ending in it finishes with 'stop'. */
export const SCRIPT_END = '<|im_end|>';

/** The generation prompt ends with this after a tool result: a script it triggers is the model's answer to the result. */
export const AFTER_TOOL_TRIGGER = '<|after_tool|>';

/**
 * ChatML that renders tools, assistant tool calls and tool results the way Qwen's templates
 * do (hermes style), so the server detects the hermes parser from it. The generation prompt
 * `<|im_start|>assistant\n` ends in '\n'; it is followed by the `script` template variable
 * when a request names a trigger piece there (chat_template_kwargs), which picks one of
 * several scripts, or else by AFTER_TOOL_TRIGGER when the last message is a tool result,
 * so that an agent loop (call, result, answer) ends.
 */
export const SCRIPTED_CHAT_TEMPLATE = [
  '{{ bos_token }}',
  '{%- if tools %}<|im_start|>system\n# Tools\n<tools>',
  '{%- for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n',
  'Call a function as <tool_call>\n{"name": <name>, "arguments": <object>}\n</tool_call><|im_end|>\n{% endif %}',
  '{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}',
  '{%- if message.tool_calls %}{% for call in message.tool_calls %}',
  '\n<tool_call>\n{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}\n</tool_call>',
  '{%- endfor %}{% endif %}<|im_end|>\n{% endfor %}',
  "{%- if add_generation_prompt %}<|im_start|>assistant\n{% if script %}{{ script }}{% elif messages[-1].role == 'tool' %}",
  `${AFTER_TOOL_TRIGGER}{% endif %}{% endif %}`,
].join('');

/** Logit weight of a successor; large enough that no sampler setting picks anything else. */
const SUCCESSOR_WEIGHT = 16;
/** The byte-level vocabulary below the added pieces (bytes, a few merges, the four specials). */
const BASE_VOCAB = 384;
const SHAPE = { hidden: 64, layers: 1, heads: 2, kvHeads: 1, headDim: 32, intermediate: 64 };

export async function writeScriptedModel(dir: string, options: ScriptedModelOptions): Promise<ScriptedModel> {
  const contextLength = options.contextLength ?? 2048;
  const base = byteBpeTokenizer({ vocabSize: BASE_VOCAB, seed: 11, contextLength });
  const tokenIds = pieceIds(options.scripts, base.tokenizerJson);
  const successors = successorTable(options.scripts, tokenIds);
  const dims = new Map([...successors.keys()].map((id, i) => [id, i]));
  if (dims.size > SHAPE.hidden) throw new RangeError(`at most ${SHAPE.hidden} scripted tokens with a successor, got ${dims.size}`);
  const vocabSize = Math.max(BASE_VOCAB - 1, ...tokenIds.values()) + 1;

  await mkdir(dir, { recursive: true });
  await writeJson(join(dir, 'tokenizer.json'), base.tokenizerJson);
  await writeJson(join(dir, 'tokenizer_config.json'), {
    ...base.tokenizerConfig,
    chat_template: options.chatTemplate ?? SCRIPTED_CHAT_TEMPLATE,
  });
  const config = llamaConfig(vocabSize, contextLength, base.bosTokenId, base.eosTokenId);
  await writeJson(join(dir, 'config.json'), config);
  await writeJson(join(dir, 'generation_config.json'), {
    bos_token_id: base.bosTokenId,
    eos_token_id: [base.eosTokenId, base.endOfTurnId],
  });
  const spec = modelSpecFromConfig(config);
  await writeSafetensors(join(dir, 'model.safetensors'), listWeights(spec.weights), 'f32', (t) => weightValues(t, spec, dims, successors));
  return { dir, tokenIds };
}

/** Ids of every piece: bytes and specials as they are, anything else appended as an added token. */
function pieceIds(scripts: Script[], tokenizerJson: Record<string, unknown>): Map<string, number> {
  const added = tokenizerJson.added_tokens as ({ id: number; content: string; special: boolean } & Record<string, unknown>)[];
  const ids = new Map<string, number>();
  let nextId = BASE_VOCAB;
  for (const piece of scripts.flatMap((s) => [s.trigger, ...s.pieces])) {
    if (ids.has(piece)) continue;
    const bytes = Buffer.from(piece, 'utf8');
    const special = added.find((t) => t.content === piece);
    // the byte-level vocabulary gives byte b the id b
    if (bytes.length === 1) ids.set(piece, bytes[0]!);
    else if (special) ids.set(piece, special.id);
    else {
      added.push({ id: nextId, content: piece, special: false, single_word: false, lstrip: false, rstrip: false, normalized: false });
      ids.set(piece, nextId++);
    }
  }
  return ids;
}

/** token id -> the id that follows it; a token followed by two different ones cannot be scripted. */
function successorTable(scripts: Script[], ids: Map<string, number>): Map<number, number> {
  const next = new Map<number, number>();
  for (const script of scripts) {
    const chain = [script.trigger, ...script.pieces].map((p) => ids.get(p)!);
    for (let i = 0; i + 1 < chain.length; i++) {
      const seen = next.get(chain[i]!);
      if (seen !== undefined && seen !== chain[i + 1])
        throw new RangeError(`scripted token ${JSON.stringify([script.trigger, ...script.pieces][i])} has two successors`);
      next.set(chain[i]!, chain[i + 1]!);
    }
  }
  return next;
}

function llamaConfig(vocabSize: number, contextLength: number, bos: number, eos: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: vocabSize,
    hidden_size: SHAPE.hidden,
    intermediate_size: SHAPE.intermediate,
    num_hidden_layers: SHAPE.layers,
    num_attention_heads: SHAPE.heads,
    num_key_value_heads: SHAPE.kvHeads,
    head_dim: SHAPE.headDim,
    max_position_embeddings: contextLength,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    attention_bias: false,
    bos_token_id: bos,
    eos_token_id: eos,
    torch_dtype: 'float32',
  };
}

function weightValues(ref: TensorRef, spec: ModelSpec, dims: Map<number, number>, successors: Map<number, number>): Float32Array {
  const out = new Float32Array(ref.shape.reduce((a, b) => a * b, 1));
  const hidden = spec.hiddenSize;
  if (ref.name.endsWith('norm.weight')) return out.fill(1);
  if (ref.name === 'model.embed_tokens.weight') {
    for (const [id, dim] of dims) out[id * hidden + dim] = 1;
  } else if (ref.name === 'lm_head.weight') {
    for (const [id, next] of successors) out[next * hidden + dims.get(id)!] = SUCCESSOR_WEIGHT;
  }
  // every projection stays zero: attention and MLP add nothing to the residual stream
  return out;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}
