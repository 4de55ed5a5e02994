/**
 * Draft tokens for speculative decoding by prompt lookup (n-gram matching, vLLM's
 * `method: "ngram"`): where the sequence's last n tokens occurred before, in the prompt or
 * in its own output, guess that what followed them then follows them again. No draft model,
 * no GPU work: it pays off where the output copies its input (summaries, code edits,
 * extraction, retrieval answers) or repeats itself, and costs only a few rows per step when
 * the guess is wrong. Whether a draft is kept is decided by the sampler (scheduler.ts).
 */

export interface NgramProposerOptions {
  /** Shortest suffix worth matching (a 1-token match proposes often and is right less often). */
  minNgram: number;
  /** Longest suffix matched: the first earlier occurrence of this many tokens ends the search. */
  maxNgram: number;
}

/**
 * `maxDrafts` tokens that followed the latest earlier occurrence of the longest suffix of
 * `tokens` (between minNgram and maxNgram tokens long); empty when there is none. One
 * backward scan: each earlier position holding the last token is extended backwards, and the
 * most recent one with the longest match wins (recent text predicts a loop or a copy best).
 */
export function proposeNgramDrafts(tokens: readonly number[], maxDrafts: number, options: NgramProposerOptions): number[] {
  const n = tokens.length;
  if (maxDrafts < 1 || n < options.minNgram + 1) return [];
  const last = tokens[n - 1]!;
  let bestEnd = -1;
  let bestLength = options.minNgram - 1;
  // e: where an earlier occurrence of the suffix ends; its continuation starts at e + 1
  for (let e = n - 2; e >= 0; e--) {
    if (tokens[e] !== last) continue;
    let length = 1;
    while (length < options.maxNgram && length <= e && tokens[e - length] === tokens[n - 1 - length]) length++;
    if (length > bestLength) {
      bestLength = length;
      bestEnd = e;
      if (length === options.maxNgram) break;
    }
  }
  if (bestEnd < 0) return [];
  // a continuation that runs into the sequence's end goes on with the drafts themselves: the
  // suffix repeats with period n - 1 - bestEnd, and so does the guess
  const drafts: number[] = [];
  for (let i = bestEnd + 1; drafts.length < maxDrafts; i++) drafts.push(i < n ? tokens[i]! : drafts[i - n]!);
  return drafts;
}
