/**
 * Which tokens may come next: the vocabulary trie walked depth first with the automaton,
 * each edge's byte fed to the state of its parent; a rejected byte prunes the whole subtree
 * (every token starting with those bytes). A token is allowed when its last byte is
 * accepted: the text then stays a prefix of some valid JSON text.
 *
 * The result is a bitmask over token ids: bit (id % 32) of word floor(id / 32) set means
 * allowed, the layout the token-mask kernel (src/kernels/token-mask.ts) reads.
 */
import { tokenMaskWords } from '../../kernels/token-mask.js';
import { REJECTED, type AutomatonState, type GrammarAutomaton } from './automaton.js';
import type { TokenTrie } from './token-trie.js';

/** Words of one mask, the kernel's layout. */
export const maskWords = tokenMaskWords;

/** Sets the bit of every token the automaton accepts from `state` in `mask` (which it does not clear). */
export function markAllowedTokens(trie: TokenTrie, automaton: GrammarAutomaton, state: AutomatonState, mask: Uint32Array): void {
  if (state.length === 0) return;
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
