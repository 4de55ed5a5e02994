/**
 * Tokens as logprobs report them. A byte-level BPE token (or a SentencePiece byte-fallback
 * token such as <0xF0>) can hold only part of a UTF-8 character; decoded alone it is U+FFFD,
 * the same text for every such token, and U+FFFD's own bytes are not the token's. So a
 * token carries its own bytes, read from the vocabulary the way constrained decoding reads
 * it (constraints/token-bytes.ts), and as its string the text of those bytes, or, where they
 * are not valid UTF-8 on their own, OpenAI's form for such tokens: `bytes:\xf0\x9f`.
 *
 * Special and added tokens (no bytes in that table but the tool-call markers, whose bytes are
 * their text) and any token of a vocabulary that cannot be read byte by byte are their
 * decoded text and its UTF-8.
 */
import { bytesOfToken, type TokenBytes, type VocabularySource } from './constraints/token-bytes.js';
import type { LogprobToken } from './types.js';

const enc = new TextEncoder();
// ignoreBOM: a token may be U+FEFF itself, which a default decoder drops
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class LogprobTokens {
  /** Built on first use (a Qwen-sized vocabulary takes a few hundred ms); null: the vocabulary cannot be read by bytes. */
  private table: TokenBytes | null | undefined;

  constructor(
    private readonly vocabulary: VocabularySource,
    /** The vocabulary's token bytes (constrained decoding's table, built once for both); throws if it cannot be read so. */
    private readonly readTokenBytes: () => TokenBytes,
  ) {}

  of(id: number): LogprobToken {
    const own = this.bytesTable() ? bytesOfToken(this.table!, id) : undefined;
    if (own === undefined || own.length === 0) {
      const text = this.vocabulary.decode([id]);
      return { token: text, bytes: [...enc.encode(text)] };
    }
    const bytes = [...own];
    try {
      return { token: strictUtf8.decode(own), bytes };
    } catch {
      return { token: `bytes:${bytes.map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}`, bytes };
    }
  }

  private bytesTable(): TokenBytes | null {
    if (this.table === undefined) {
      try {
        this.table = this.readTokenBytes();
      } catch {
        // refused by its check against the tokenizer's decode: decoded text, as before
        this.table = null;
      }
    }
    return this.table;
  }
}
