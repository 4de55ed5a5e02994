/**
 * Synthetic prompts of a requested length for any OpenAI-compatible server. The generator
 * does not know the server's tokenizer, so text prompts are runs of common short English
 * words, each with a leading space: one token apiece in the usual BPE vocabularies (a
 * byte-level vocabulary counts several). The server's own `usage.prompt_tokens` is what
 * the report uses when it is streamed back. Prompts are random word sequences, so
 * requests share no prefix and prefix caches cannot flatter the numbers.
 * Token-id prompts (for /v1/completions) are exact: random ids below the vocabulary size.
 */
import type { SeededRandom } from './random.js';

const WORDS = (
  'the of and to in is was he for it with as his on be at by had are but from or have an they which one you were all ' +
  'her she there would their we him been has when who will no more if out so up said what its about than into them can ' +
  'only other time new some could these two may first then do any like my now over such our man me even most made after ' +
  'also did many off before must well back through years much where your way down should because each just those people ' +
  'how too little state good very make world still see own men work long here get both between life being under never day ' +
  'same another know while last might us great old year come since against go came right used take three'
).split(' ');

export type PromptMode = 'text' | 'token-ids';

/** A prompt of about `tokens` tokens (exactly, for token ids). */
export function syntheticPrompt(tokens: number, rng: SeededRandom, options: { mode: PromptMode; vocabSize?: number }): string | number[] {
  if (options.mode === 'token-ids') {
    // Skip the lowest ids: special tokens (BOS/EOS/pad) usually live there.
    const lo = Math.min(16, Math.max(0, (options.vocabSize ?? 32000) - 1));
    const hi = (options.vocabSize ?? 32000) - 1;
    return Array.from({ length: tokens }, () => rng.intBetween(lo, hi));
  }
  const words: string[] = [];
  for (let i = 0; i < tokens; i++) words.push(WORDS[rng.intBetween(0, WORDS.length - 1)]!);
  return ' ' + words.join(' ');
}
