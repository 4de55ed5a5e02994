/**
 * One request's constraint: where its output stands in the grammar, which tokens may come
 * next (mask), and the step forward with each sampled token (accept).
 */
import { AutoGlmError } from '../../errors.js';
import type { AutomatonState, GrammarAutomaton } from './automaton.js';
import type { MaskCache } from './mask-cache.js';
import { markAllowedTokens, maskWords } from './mask-walk.js';
import { bytesOfToken, type TokenBytes } from './token-bytes.js';
import type { StringTokens } from './string-tokens.js';
import type { TokenTrie } from './token-trie.js';

/** What every request of one engine shares: the vocabulary read as bytes, and the mask cache. */
export interface ConstraintVocabulary {
  readonly tokens: TokenBytes;
  readonly trie: TokenTrie;
  readonly strings: StringTokens;
  /**
   * The text of the added tokens the detokenizer writes (not special) and `tokens` leaves
   * out (such as `<think>`): a reasoning gate looks for its tags in them.
   */
  readonly addedTokenBytes: ReadonlyMap<number, Uint8Array>;
  /** Allowed, and only allowed, once the value is complete. */
  readonly eosTokenIds: readonly number[];
  readonly masks: MaskCache;
}

/**
 * What the engine asks of a request's constraint before and after each sampled token.
 * TokenConstraint is one; a reasoning model's answer is constrained by one that lets the
 * reasoning before it run free (reasoning-gate.ts).
 */
export interface OutputConstraint {
  /** The tokens allowed next (a bitmask over ids; read it, never write it), or null: any token. */
  mask(): Uint32Array | null;
  /** Moves past a sampled token; throws if it was not allowed. */
  accept(tokenId: number): void;
  /** An independent copy in the same state (to look ahead along speculative drafts without moving this one). */
  fork(): OutputConstraint;
}

/** A compiled response format, shared by every request that uses it. */
export interface CompiledFormat {
  /** Distinguishes formats in the shared mask cache. */
  readonly serial: number;
  /** The format in a form that decides the output (for the response cache key). */
  readonly key: string;
  readonly automaton: GrammarAutomaton;
}

export class TokenConstraint implements OutputConstraint {
  private state: AutomatonState;
  private readonly eos: ReadonlySet<number>;

  constructor(
    readonly format: CompiledFormat,
    private readonly vocabulary: ConstraintVocabulary,
  ) {
    this.state = format.automaton.initial();
    this.eos = new Set(vocabulary.eosTokenIds);
  }

  /** The text so far is one whole value. */
  get isComplete(): boolean {
    return this.format.automaton.isComplete(this.state);
  }

  /**
   * The tokens allowed next, as a bitmask over token ids (maskWords(vocabSize) words). It may
   * be shared with other requests in the same state: read it, never write to it.
   */
  mask(): Uint32Array {
    const { automaton, serial } = this.format;
    const { masks, tokens } = this.vocabulary;
    const key = `${serial}:${automaton.key(this.state)}`;
    const cached = masks.get(key);
    if (cached) return cached;
    const mask = new Uint32Array(maskWords(tokens.count));
    markAllowedTokens(this.vocabulary, automaton, this.state, mask);
    if (automaton.isComplete(this.state)) for (const id of this.eos) if (id < tokens.count) mask[id >>> 5]! |= 1 << (id & 31);
    if (!mask.some((w) => w !== 0))
      throw new AutoGlmError('internal_error', 'constrained decoding: no token of the vocabulary can continue the constrained text here');
    masks.set(key, mask);
    return mask;
  }

  /** Moves past a sampled token; throws if the token was not allowed (the mask and the draw disagree). */
  accept(tokenId: number): void {
    if (this.eos.has(tokenId)) {
      // the end (or, with ignore_eos, a token that changes nothing)
      if (!this.isComplete)
        throw new AutoGlmError('internal_error', `constrained decoding: EOS (token ${tokenId}) before the constrained text is complete`);
      return;
    }
    const bytes =
      tokenId >= 0 && tokenId < this.vocabulary.tokens.count ? bytesOfToken(this.vocabulary.tokens, tokenId) : new Uint8Array(0);
    const next = bytes.length === 0 ? [] : this.format.automaton.advanceBytes(this.state, bytes);
    if (next.length === 0)
      throw new AutoGlmError('internal_error', `constrained decoding: token ${tokenId} does not continue the constrained text`);
    this.state = next;
  }

  fork(): TokenConstraint {
    const copy = new TokenConstraint(this.format, this.vocabulary);
    // states are never changed in place: sharing one is safe
    copy.state = this.state;
    return copy;
  }

  /** Back to the start of the text (a reasoning gate's answer, fed the start tag's bytes while either could come). */
  restart(): void {
    this.state = this.format.automaton.initial();
  }

  /**
   * Moves past text that is not a whole token (what follows a reasoning model's end tag
   * inside the token that wrote it); false, and nothing changed, if the text does not fit.
   */
  acceptBytes(bytes: Uint8Array): boolean {
    const next = this.format.automaton.advanceBytes(this.state, bytes);
    if (next.length === 0) return false;
    this.state = next;
    return true;
  }
}
