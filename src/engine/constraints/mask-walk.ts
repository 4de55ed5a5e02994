/**
 * Which tokens may come next: the vocabulary trie walked depth first with the automaton,
 * each edge's byte fed to the state of its parent; a rejected byte prunes the whole subtree
 * (every token starting with those bytes). A token is allowed when its last byte is
 * accepted: the text then stays a prefix of some valid JSON text.
 *
 * Inside a string the vocabulary's plain-text tokens are allowed at once, as precomputed
 * masks by length (string-tokens.ts), and only the rest is walked.
 *
 * The result is a bitmask over token ids: bit (id % 32) of word floor(id / 32) set means
 * allowed, the layout the token-mask kernel (src/kernels/token-mask.ts) reads.
 */
import { tokenMaskWords } from '../../kernels/token-mask.js';
import { REJECTED, type AutomatonState, type GrammarAutomaton } from './automaton.js';
import { NOT_IN_STRING } from './grammar.js';
import type { StringTokens } from './string-tokens.js';
import type { TokenTrie } from './token-trie.js';

/** Words of one mask, the kernel's layout. */
export const maskWords = tokenMaskWords;

/** What a walk needs of the vocabulary; without `strings`, every mask is walked byte by byte. */
export interface MaskVocabulary {
  readonly trie: TokenTrie;
  readonly strings?: StringTokens;
}

/** Sets the bit of every token the automaton accepts from `state` in `mask` (which it does not clear). */
export function markAllowedTokens(vocabulary: MaskVocabulary, automaton: GrammarAutomaton, state: AutomatonState, mask: Uint32Array): void {
  if (state.length === 0) return;
  const { strings } = vocabulary;
  const room = state.length === 1 ? automaton.grammar.stringRoom[state[0]!.node]! : NOT_IN_STRING;
  if (strings && room !== NOT_IN_STRING) {
    // inside a string: every plain-text token that fits at once, the rest byte by byte
    const plain = strings.upTo[Math.min(room, strings.upTo.length - 1)]!;
    for (let w = 0; w < mask.length; w++) mask[w]! |= plain[w]!;
    walk(strings.rest, automaton, state, mask);
  } else walk(vocabulary.trie, automaton, state, mask);
}

function walk(trie: TokenTrie, automaton: GrammarAutomaton, state: AutomatonState, mask: Uint32Array): void {
  const { childStart, childByte, childNode, tokenStart, tokenIds } = trie;
  const visit = (node: number, at: AutomatonState): void => {
    const end = childStart[node + 1]!;
    for (let e = childStart[node]!; e < end; e++) {
      const next = automaton.advance(at, childByte[e]!);
      if (next === REJECTED) continue;
      const child = childNode[e]!;
      const lastToken = tokenStart[child + 1]!;
      for (let t = tokenStart[child]!; t < lastToken; t++) {
        const id = tokenIds[t]!;
        mask[id >>> 5]! |= 1 << (id & 31);
      }
      if (childStart[child]! < childStart[child + 1]!) visit(child, next);
    }
  };
  visit(0, state);
}
