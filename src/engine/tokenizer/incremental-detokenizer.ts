/**
 * Token ids in, text deltas out, one token at a time. Byte-level BPE tokens can carry part
 * of a UTF-8 character (an emoji is often 2-4 tokens), so a delta is only released once the
 * text decoded so far no longer ends in an incomplete character (U+FFFD). Each step decodes
 * a short window, starting at the token before the last emitted ones, so SentencePiece-style
 * decoders that strip a leading space see the same context as a full decode (vLLM's scheme).
 * The concatenation of all deltas plus flush() equals decode(all ids).
 */

export interface Detokenize {
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
}

export interface IncrementalDetokenizerOptions {
  /** Leave special tokens (EOS, chat markers) out of the text (default true). */
  skipSpecialTokens?: boolean;
}

const REPLACEMENT = '\uFFFD';

export class IncrementalDetokenizer {
  private readonly ids: number[] = [];
  /** Start of the decode window: context only, its text was emitted earlier. */
  private prefixOffset = 0;
  /** Tokens before this have been emitted. */
  private readOffset = 0;
  private readonly skipSpecialTokens: boolean;

  constructor(
    private readonly tokenizer: Detokenize,
    options: IncrementalDetokenizerOptions = {},
  ) {
    this.skipSpecialTokens = options.skipSpecialTokens ?? true;
  }

  /** Adds one token; returns the text that became final ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const prefixText = this.decodeRange(this.prefixOffset, this.readOffset);
    const fullText = this.decodeRange(this.prefixOffset, this.ids.length);
    if (fullText.length > prefixText.length && !fullText.endsWith(REPLACEMENT)) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return fullText.slice(prefixText.length);
    }
    return '';
  }

  /**
   * Feeds tokens whose text was already delivered (failover resume) without returning it:
   * the state afterwards is exactly that of an uninterrupted run, so a character split
   * across the resume point still comes out whole.
   */
  prime(ids: readonly number[]): void {
    for (const id of ids) this.push(id);
  }

  /** Text still held back (an incomplete character at the very end); call once at the end. */
  flush(): string {
    const prefixText = this.decodeRange(this.prefixOffset, this.readOffset);
    const fullText = this.decodeRange(this.prefixOffset, this.ids.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return fullText.slice(prefixText.length);
  }

  get tokenIds(): readonly number[] {
    return this.ids;
  }

  private decodeRange(start: number, end: number): string {
    if (end <= start) return '';
    return this.tokenizer.decode(this.ids.slice(start, end), { skipSpecialTokens: this.skipSpecialTokens });
  }
}
