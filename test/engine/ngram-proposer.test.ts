import { describe, expect, it } from 'vitest';
import { proposeNgramDrafts } from '../../src/engine/ngram-proposer.js';

const lookup = { minNgram: 2, maxNgram: 4 };

/** The drafts by brute force: for n from max down to min, the latest earlier occurrence of the last n tokens, continued periodically. */
function bruteForce(tokens: number[], maxDrafts: number, minNgram: number, maxNgram: number): number[] {
  for (let n = maxNgram; n >= minNgram; n--) {
    if (tokens.length < n + 1) continue;
    const suffix = tokens.slice(-n);
    for (let end = tokens.length - 2; end >= n - 1; end--) {
      if (suffix.every((t, i) => tokens[end - n + 1 + i] === t)) {
        // the text goes on repeating with the match's period
        const period = tokens.length - 1 - end;
        const text = [...tokens];
        while (text.length < end + 1 + maxDrafts) text.push(text[text.length - period]!);
        return text.slice(end + 1, end + 1 + maxDrafts);
      }
    }
  }
  return [];
}

describe('proposeNgramDrafts (prompt lookup)', () => {
  it('continues the latest earlier occurrence of the longest matching suffix', () => {
    // "3 4" occurs twice before the end; "2 3 4" once, followed by 9 8
    expect(proposeNgramDrafts([2, 3, 4, 9, 8, 3, 4, 7, 1, 2, 3, 4], 3, lookup)).toEqual([9, 8, 3]);
    // only the 2-token suffix matches: its latest occurrence wins
    expect(proposeNgramDrafts([3, 4, 5, 6, 3, 4, 7, 8, 3, 4], 2, lookup)).toEqual([7, 8]);
  });

  it('proposes nothing without a match of at least minNgram tokens, or when no draft is wanted', () => {
    expect(proposeNgramDrafts([1, 2, 3, 4, 5, 4], 4, lookup)).toEqual([]); // "5 4" never occurred
    expect(proposeNgramDrafts([1, 2, 3, 1, 2], 0, lookup)).toEqual([]);
    expect(proposeNgramDrafts([7], 4, lookup)).toEqual([]);
    expect(proposeNgramDrafts([], 4, lookup)).toEqual([]);
    // a 1-token match counts only when minNgram allows it
    expect(proposeNgramDrafts([5, 6, 7, 5], 2, lookup)).toEqual([]);
    expect(proposeNgramDrafts([5, 6, 7, 5], 2, { minNgram: 1, maxNgram: 4 })).toEqual([6, 7]);
  });

  it('continues a loop shorter than the drafts wanted with its own period', () => {
    // period 3: the match "1 2 3" ends 3 tokens back; what follows it runs into the end and repeats
    expect(proposeNgramDrafts([9, 1, 2, 3, 1, 2, 3], 7, lookup)).toEqual([1, 2, 3, 1, 2, 3, 1]);
    // a token repeated: period 1
    expect(proposeNgramDrafts([4, 4, 4], 5, lookup)).toEqual([4, 4, 4, 4, 4]);
  });

  it('agrees with a brute-force search on random sequences over small vocabularies', () => {
    let x = 12345;
    const next = (): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8;
    for (let trial = 0; trial < 500; trial++) {
      const vocab = 2 + (next() % 5);
      const tokens = Array.from({ length: 1 + (next() % 40) }, () => next() % vocab);
      const minNgram = 1 + (next() % 3);
      const maxNgram = minNgram + (next() % 4);
      const k = next() % 7;
      expect(proposeNgramDrafts(tokens, k, { minNgram, maxNgram }), JSON.stringify({ tokens, k, minNgram, maxNgram })).toEqual(
        k === 0 ? [] : bruteForce(tokens, k, minNgram, maxNgram),
      );
    }
  });
});
