/**
 * Counts a choice's reasoning tokens (usage.completion_tokens_details.reasoning_tokens):
 * the generated tokens whose text lies inside the reasoning, its tags left out, which is
 * what vLLM counts when the tags are single tokens (Qwen3's and DeepSeek-R1's are).
 *
 * The output arrives as pieces of text with the tokens behind each (mostly one token per
 * piece); where the reasoning starts and ends is known only later, so the pieces are noted
 * and counted at the end. A piece of several tokens that a tag boundary cuts through (the
 * text of a resumed stream's earlier tokens, replayed in one piece) is split by decoding
 * prefixes of its tokens, found by bisection.
 */
export type TextOfTokens = (tokenIds: readonly number[]) => Promise<string>;

interface Piece {
  /** Offset of the piece's first character in the output. */
  at: number;
  length: number;
  tokenIds: readonly number[];
}

export class ReasoningTokenCounter {
  private readonly pieces: Piece[] = [];
  private length = 0;

  add(text: string, tokenIds: readonly number[]): void {
    if (tokenIds.length === 0 && text === '') return;
    this.pieces.push({ at: this.length, length: text.length, tokenIds });
    this.length += text.length;
  }

  /** Tokens wholly inside the reasoning's text, [from, to) in output offsets (`to` null: up to the end). */
  async count(span: { from: number; to: number | null }, textOf: TextOfTokens): Promise<number> {
    const to = span.to ?? this.length;
    let n = 0;
    for (const p of this.pieces) {
      const end = p.at + p.length;
      // a token without text (EOS) is no part of the reasoning
      if (p.length === 0 || end <= span.from || p.at >= to) continue;
      if (p.at >= span.from && end <= to) n += p.tokenIds.length;
      else if (p.tokenIds.length > 1) n += await tokensWithin(p, span.from, to, textOf);
    }
    return n;
  }
}

/** How many of a piece's tokens lie wholly in [from, to): token i covers [L(i), L(i + 1)), L the length of the first i tokens' text. */
async function tokensWithin(p: Piece, from: number, to: number, textOf: TextOfTokens): Promise<number> {
  const ends = new Map<number, number>();
  const endOf = async (k: number): Promise<number> => {
    let known = ends.get(k);
    if (known === undefined) ends.set(k, (known = p.at + (k === 0 ? 0 : (await textOf(p.tokenIds.slice(0, k))).length)));
    return known;
  };
  // the first token starting at or after `from`, and how many tokens end at or before `to`
  // (a bound outside the piece needs no search: a search near the piece's end decodes about all of it each step)
  const n = p.tokenIds.length;
  const first = p.at >= from ? 0 : await lowestIndex(n, async (k) => (await endOf(k)) >= from);
  const last = p.at + p.length <= to ? n : (await lowestIndex(n + 1, async (k) => (await endOf(k)) > to)) - 1;
  return Math.max(0, last - first);
}

/** The lowest k in [0, n) for which `holds` (which once true stays true), else n. */
async function lowestIndex(n: number, holds: (k: number) => Promise<boolean>): Promise<number> {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (await holds(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
