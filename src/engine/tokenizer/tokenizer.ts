/**
 * A model's tokenizer: tokenizer.json through @huggingface/tokenizers, special tokens and
 * the chat template from tokenizer_config.json (and chat_template.jinja).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { AutoGlmError } from '../../errors.js';
import { fileProblem } from '../model/model-file.js';
import type { ChatMessage } from '../types.js';
import { ChatTemplate, selectTemplateSource, type RenderChatOptions } from './chat-template.js';

export interface EncodeOptions {
  /** Let the tokenizer's post-processor add BOS/EOS (default true, as in transformers). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, chat markers) from the text (default false). */
  skipSpecialTokens?: boolean;
}

export class Tokenizer {
  /** Ids of every added token marked special. */
  readonly specialIds: ReadonlySet<number>;
  readonly bosTokenId: number | null;
  /** The tokenizer's own EOS token (tokenizer_config eos_token); the engine merges in config/generation EOS ids. */
  readonly eosTokenIds: readonly number[];
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  /** Largest id + 1 over the vocabulary and added tokens. */
  readonly vocabSize: number;
  /** Largest id + 1 over the vocabulary without added tokens: the ids plain text encodes to. */
  readonly baseVocabSize: number;
  readonly chatTemplate: ChatTemplate | null;

  constructor(
    private readonly hf: HfTokenizer,
    config: Record<string, unknown>,
    templateSource: string | null,
    /** The template's file (and key), for its parse error. */
    templateOrigin?: string,
  ) {
    const added = hf.get_added_tokens_decoder();
    this.specialIds = new Set([...added].filter(([, t]) => t.special).map(([id]) => id));
    this.bosToken = tokenContent(config['bos_token']);
    this.eosToken = tokenContent(config['eos_token']);
    this.bosTokenId = this.bosToken === null ? null : (hf.token_to_id(this.bosToken) ?? null);
    const eosId = this.eosToken === null ? undefined : hf.token_to_id(this.eosToken);
    this.eosTokenIds = eosId === undefined ? [] : [eosId];
    this.vocabSize = maxIdOf(hf.get_vocab(true).values()) + 1;
    this.baseVocabSize = maxIdOf(hf.get_vocab(false).values()) + 1;
    const special: Record<string, string> = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
      const content = tokenContent(config[key]);
      if (content !== null) special[key] = content;
    }
    this.chatTemplate = templateSource === null ? null : new ChatTemplate(templateSource, special, templateOrigin);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    return this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    // @huggingface/tokenizers throws on an empty list; no tokens are the empty text.
    if (ids.length === 0) return '';
    return this.hf.decode(ids as number[], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The vocabulary string of an id (byte-level form for BPE, e.g. "Ġworld"), undefined when unknown. */
  tokenString(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  tokenId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** The chat template's text for these messages. */
  renderChat(messages: ChatMessage[], options: RenderChatOptions = {}): string {
    if (!this.chatTemplate)
      throw new AutoGlmError('invalid_request', 'this model has no chat template; send a plain prompt instead', { param: 'messages' });
    return this.chatTemplate.render(messages, options);
  }

  /**
   * Token ids of the rendered chat. The template writes BOS and every other special token
   * itself, so the text is encoded without the post-processor's specials (transformers does
   * the same); otherwise Llama 3 would start with two <|begin_of_text|>.
   */
  applyChatTemplate(messages: ChatMessage[], options: RenderChatOptions = {}): number[] {
    return this.encode(this.renderChat(messages, options), { addSpecialTokens: false });
  }
}

export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tokenizerJson = await readJson(join(dir, 'tokenizer.json'), true);
  const config = (await readJson(join(dir, 'tokenizer_config.json'), false)) ?? {};
  const templateFile = join(dir, 'chat_template.jinja');
  const fileTemplate = await readText(templateFile);
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(tokenizerJson!, config);
  } catch (e) {
    throw new AutoGlmError('tokenizer_error', `${join(dir, 'tokenizer.json')}: cannot build the tokenizer: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const templateOrigin = fileTemplate !== null ? templateFile : `${join(dir, 'tokenizer_config.json')} chat_template`;
  return new Tokenizer(hf, config, selectTemplateSource(fileTemplate, config['chat_template']), templateOrigin);
}

function maxIdOf(ids: Iterable<number>): number {
  let max = -1;
  for (const id of ids) if (id > max) max = id;
  return max;
}

/** tokenizer_config.json writes special tokens as a string or as {content: "..."}. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return null;
}

async function readText(file: string): Promise<string | null> {
  const problem = await fileProblem(file);
  if (problem?.missing) return null;
  if (problem) throw new AutoGlmError('tokenizer_error', `cannot read ${file}: it ${problem.problem}`);
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new AutoGlmError('tokenizer_error', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

async function readJson(file: string, required: boolean): Promise<Record<string, unknown> | null> {
  const text = await readText(file);
  if (text === null) {
    if (required) throw new AutoGlmError('tokenizer_error', `${file} is missing`);
    return null;
  }
  try {
    const json: unknown = JSON.parse(text);
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error('not a JSON object');
    return json as Record<string, unknown>;
  } catch (e) {
    throw new AutoGlmError('tokenizer_error', `${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}
