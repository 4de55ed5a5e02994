/**
 * The bytes each token of a vocabulary writes, which is what a byte-level automaton must
 * see: a byte-level BPE token can hold part of a UTF-8 character (the incremental
 * detokenizer holds such text back until the character is whole), so a token's decoded
 * text alone is not enough.
 *
 * Two vocabulary forms are read directly from the token strings: GPT-2's byte-level BPE
 * (every byte written as one printable character: Llama 3, Qwen, the demo model) and
 * SentencePiece with byte fallback ('▁' for a space, <0xAB> for a raw byte: Llama 2,
 * Mistral). Any other vocabulary falls back to each token's decoded text, leaving out tokens
 * that decode to an incomplete character. The result is checked against the tokenizer's own
 * decode on a sample of tokens: a vocabulary read wrongly is refused, not used.
 *
 * Special tokens and added tokens (ids at or past the base vocabulary) get no bytes: they
 * never appear inside constrained text (EOS is handled by the constraint itself). The one
 * exception is an added token a grammar writes as literal text (Qwen's `<tool_call>`), when
 * the caller names it and the tokenizer does not count it special (the detokenizer keeps
 * its text): it is admitted as exactly the bytes of that text, one atomic token, so the
 * model can write the tag the way it was trained to and the bytes the grammar sees are
 * those the client gets.
 */
import { AutoGlmError } from '../../errors.js';

/** What this needs of a tokenizer (src/engine/tokenizer/tokenizer.ts's Tokenizer has it). */
export interface VocabularySource {
  /** Ids below this are the base vocabulary; added tokens come after. */
  readonly baseVocabSize: number;
  tokenString(id: number): string | undefined;
  decode(ids: readonly number[]): string;
  isSpecial(id: number): boolean;
}

/** Token id i writes bytes[offsets[i] .. offsets[i + 1]); none for a token that may not be used. */
export interface TokenBytes {
  readonly count: number;
  readonly offsets: Uint32Array;
  readonly bytes: Uint8Array;
  readonly scheme: 'byte-level' | 'sentencepiece' | 'decoded';
}

const SAMPLE_CHECKS = 512;
const enc = new TextEncoder();
// ignoreBOM: a token may be U+FEFF itself, which a default decoder drops
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export interface TokenBytesOptions {
  /** Texts of added tokens to admit (see above); other added and special tokens stay out. */
  admittedAddedTokens?: readonly string[];
}

/** Bytes of every id below `vocabSize` (the model's vocabulary, which may be larger than the tokenizer's). */
export function tokenBytesOf(source: VocabularySource, vocabSize: number, options: TokenBytesOptions = {}): TokenBytes {
  const strings: (string | undefined)[] = [];
  for (let id = 0; id < vocabSize; id++) strings.push(usable(source, id) ? source.tokenString(id) : undefined);
  const scheme = detectScheme(strings);
  const perToken = strings.map((s, id) => (s === undefined ? null : bytesOf(scheme, s, source, id)));
  const admitted = new Set(options.admittedAddedTokens ?? []);
  if (admitted.size > 0)
    for (let id = source.baseVocabSize; id < vocabSize; id++) {
      const text = source.tokenString(id);
      if (text !== undefined && admitted.has(text) && !source.isSpecial(id)) perToken[id] = enc.encode(text);
    }
  const offsets = new Uint32Array(vocabSize + 1);
  let total = 0;
  perToken.forEach((b, id) => {
    total += b?.length ?? 0;
    offsets[id + 1] = total;
  });
  const bytes = new Uint8Array(total);
  perToken.forEach((b, id) => b && bytes.set(b, offsets[id]!));
  const result: TokenBytes = { count: vocabSize, offsets, bytes, scheme };
  checkAgainstDecode(result, source);
  return result;
}

export function bytesOfToken(t: TokenBytes, id: number): Uint8Array {
  return t.bytes.subarray(t.offsets[id]!, t.offsets[id + 1]!);
}

function usable(source: VocabularySource, id: number): boolean {
  return id < source.baseVocabSize && !source.isSpecial(id);
}

/** GPT-2's byte -> printable character map, inverted: character code -> byte. */
const BYTE_OF_CHAR: ReadonlyMap<number, number> = (() => {
  const keep = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const map = new Map<number, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) map.set(keep(b) ? b : 256 + extra++, b);
  return map;
})();

const SPIECE_SPACE = '\u2581';
const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

function detectScheme(strings: readonly (string | undefined)[]): TokenBytes['scheme'] {
  const present = strings.filter((s): s is string => s !== undefined && s.length > 0);
  if (present.length > 0 && present.every((s) => [...s].every((c) => BYTE_OF_CHAR.has(c.codePointAt(0)!)))) return 'byte-level';
  if (present.some((s) => BYTE_TOKEN.test(s) || s.includes(SPIECE_SPACE))) return 'sentencepiece';
  return 'decoded';
}

function bytesOf(scheme: TokenBytes['scheme'], s: string, source: VocabularySource, id: number): Uint8Array | null {
  switch (scheme) {
    case 'byte-level':
      return Uint8Array.from([...s], (c) => BYTE_OF_CHAR.get(c.codePointAt(0)!)!);
    case 'sentencepiece': {
      const byte = BYTE_TOKEN.exec(s);
      return byte ? Uint8Array.of(parseInt(byte[1]!, 16)) : enc.encode(s.replaceAll(SPIECE_SPACE, ' '));
    }
    case 'decoded': {
      const text = source.decode([id]);
      return text.length === 0 || text.includes('\uFFFD') ? null : enc.encode(text);
    }
  }
}

/**
 * Tokens spread over the vocabulary whose bytes are whole UTF-8 must decode to exactly
 * that text (SentencePiece decoders may drop a leading space of the first token).
 */
function checkAgainstDecode(t: TokenBytes, source: VocabularySource): void {
  const step = Math.max(1, Math.floor(t.count / SAMPLE_CHECKS));
  for (let id = 0; id < t.count; id += step) {
    const bytes = bytesOfToken(t, id);
    if (bytes.length === 0) continue;
    let text: string;
    try {
      text = strictUtf8.decode(bytes);
    } catch {
      continue; // part of a character: decode would say U+FFFD
    }
    const decoded = source.decode([id]);
    if (decoded === text || (t.scheme === 'sentencepiece' && text.startsWith(' ') && decoded === text.slice(1))) continue;
    throw new AutoGlmError(
      'invalid_request',
      `response_format: this model's tokenizer cannot be read byte by byte for constrained decoding ` +
        `(token ${id} reads as ${JSON.stringify(text.slice(0, 20))} but decodes to ${JSON.stringify(decoded.slice(0, 20))})`,
      { param: 'response_format' },
    );
  }
}
