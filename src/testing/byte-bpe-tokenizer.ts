/**
 * A byte-level BPE tokenizer.json for generated models: ids 0..255 are the bytes (in GPT-2's
 * byte-to-unicode alphabet, as in demo-stories), then seeded merges of lowercase letters
 * (with and without a leading space) fill the vocabulary up to the special tokens at the end.
 * Every id decodes to text, so whatever a random model samples can be detokenized.
 */
import { SeededRandom } from './seeded-random.js';

export const SPECIAL_TOKENS = ['<s>', '</s>', '<|im_start|>', '<|im_end|>'] as const;

/** ChatML with a leading BOS, as many real templates write it. */
export const BYTE_BPE_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface ByteBpeTokenizer {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  bosTokenId: number;
  eosTokenId: number;
  /** <|im_end|>: ends an assistant turn, a second EOS id in generation_config.json. */
  endOfTurnId: number;
}

/** GPT-2's reversible byte -> printable character map. */
export function byteToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const map: string[] = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + extra++);
  return map;
}

export function byteBpeTokenizer(options: { vocabSize: number; seed: number; contextLength: number }): ByteBpeTokenizer {
  const { vocabSize, seed } = options;
  const numMerges = vocabSize - 256 - SPECIAL_TOKENS.length;
  if (numMerges < 0) throw new RangeError(`a byte-level vocabulary needs at least ${256 + SPECIAL_TOKENS.length} tokens, got ${vocabSize}`);
  const chars = byteToUnicode();
  const vocab: Record<string, number> = {};
  chars.forEach((c, b) => (vocab[c] = b));

  const space = chars[32]!;
  const letters = 'etaoinshrdlucmfwypvbgkjqxz';
  // merge candidates grow from letters and space+letter; words stay short so encoding stays cheap
  const heads: string[] = [...letters].map((l) => space + l);
  const tails: string[] = [...letters];
  /** Tails of up to 3 letters: the right-hand side of every merge, so words grow steadily. */
  const shortTails: string[] = [...letters];
  const merges: string[] = [];
  const rng = new SeededRandom(seed ^ 0x5eed);
  let guard = 0;
  while (merges.length < numMerges) {
    if (++guard > numMerges * 50 + 10_000) throw new Error('byte BPE: ran out of merge candidates');
    const pool = rng.next() < 0.5 ? heads : tails;
    const a = pool[rng.int(pool.length)]!;
    const b = shortTails[rng.int(shortTails.length)]!;
    const merged = a + b;
    if (merged.length > 12 || merged in vocab) continue;
    vocab[merged] = 256 + merges.length;
    merges.push(`${a} ${b}`);
    if (a.startsWith(space)) heads.push(merged);
    else {
      tails.push(merged);
      if (merged.length <= 3) shortTails.push(merged);
    }
  }

  const firstSpecial = 256 + numMerges;
  const added = SPECIAL_TOKENS.map((content, i) => ({
    id: firstSpecial + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const tokenizerConfig = {
    bos_token: '<s>',
    eos_token: '</s>',
    pad_token: null,
    add_bos_token: false,
    model_max_length: options.contextLength,
    tokenizer_class: 'PreTrainedTokenizerFast',
    chat_template: BYTE_BPE_CHAT_TEMPLATE,
  };
  return { tokenizerJson, tokenizerConfig, bosTokenId: firstSpecial, eosTokenId: firstSpecial + 1, endOfTurnId: firstSpecial + 3 };
}
