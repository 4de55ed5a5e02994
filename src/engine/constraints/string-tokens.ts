/**
 * The vocabulary's plain-text tokens, set apart for the commonest wide mask: inside a JSON
 * string nearly every token is allowed (all but 6k of Qwen3's 152k), and walking the whole
 * trie byte by byte to find that out took about 25 ms per string state on a CPU core.
 *
 * A token is plain text when its bytes are whole, well-formed UTF-8 characters with no '"',
 * '\' or control character: inside a string each of its characters is just one more
 * character. Such tokens are kept as bitmasks by character count (upTo[c]: every plain
 * token of at most c characters, for strings with maxLength); only the other tokens (quotes,
 * escapes, control characters, parts of a character) are left to walk, in a trie of their own.
 */
import { tokenMaskWords } from '../../kernels/token-mask.js';
import { bytesOfToken, type TokenBytes } from './token-bytes.js';
import { buildTokenTrie, type TokenTrie } from './token-trie.js';

export interface StringTokens {
  /** upTo[c]: plain tokens of at most c characters; a room past the end takes the last (all of them). */
  readonly upTo: readonly Uint32Array[];
  /** Every token that is not plain text. */
  readonly rest: TokenTrie;
}

// ignoreBOM: a token may be U+FEFF itself, which a default decoder drops
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Characters of the token if it is plain string text, else -1. */
export function plainTextChars(bytes: Uint8Array): number {
  if (bytes.length === 0) return -1;
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    return -1;
  }
  let chars = 0;
  for (const c of text) {
    const code = c.codePointAt(0)!;
    if (code < 0x20 || code === 0x22 || code === 0x5c) return -1;
    chars++;
  }
  return chars;
}

export function stringTokensOf(tokens: TokenBytes): StringTokens {
  const chars = new Int32Array(tokens.count);
  let longest = 0;
  for (let id = 0; id < tokens.count; id++) {
    chars[id] = plainTextChars(bytesOfToken(tokens, id));
    longest = Math.max(longest, chars[id]!);
  }
  const words = tokenMaskWords(tokens.count);
  const upTo = Array.from({ length: longest + 1 }, () => new Uint32Array(words));
  for (let id = 0; id < tokens.count; id++) if (chars[id]! > 0) upTo[chars[id]!]![id >>> 5]! |= 1 << (id & 31);
  // a token of c characters fits every room of c or more
  for (let c = 1; c <= longest; c++) for (let w = 0; w < words; w++) upTo[c]![w]! |= upTo[c - 1]![w]!;
  return { upTo, rest: buildTokenTrie(tokens, (id) => chars[id]! < 0) };
}
