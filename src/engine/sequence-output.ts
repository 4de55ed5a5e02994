/**
 * Turns one sequence's sampled token ids into text events and decides when it ends:
 * EOS or a stop token id ('stop'), a stop string ('stop', anything after it withheld, and
 * the stop text too unless includeStopString), or max tokens ('length'). Text is released
 * only when final: a partial UTF-8 character, or text that could still begin a stop
 * string, waits for the next token.
 */
import { IncrementalDetokenizer, type Detokenize } from './tokenizer/incremental-detokenizer.js';
import { StopStringMatcher } from './tokenizer/stop-strings.js';
import type { FinishReason } from './types.js';

export interface SequenceOutputOptions {
  tokenizer: Detokenize;
  eosTokenIds: readonly number[];
  stopTokenIds: readonly number[];
  stop: readonly string[];
  /** A stop string that ends the output stays at its end (vLLM's include_stop_str_in_output). */
  includeStopString?: boolean;
  /** Generated tokens at most, resumed ones included. */
  maxTokens: number;
  /**
   * Tokens (resumed ones included) before which nothing ends the output: a stop string counts
   * only if it ends at or after this token (one that begins before may), as in vLLM; EOS and
   * stop ids are banned on the GPU meanwhile. Default 0.
   */
  minTokens?: number;
  /** Tokens generated elsewhere before this worker took over (their text was already sent). */
  resumeTokenIds: readonly number[];
}

export interface OutputStep {
  text: string;
  /** Index of this token among generated tokens, resumed ones included. */
  index: number;
  finishReason?: Exclude<FinishReason, 'cancelled'>;
}

export class SequenceOutput {
  private readonly detokenizer: IncrementalDetokenizer;
  private readonly stops: StopStringMatcher;
  private readonly endIds: Set<number>;
  private generated: number;
  private done = false;

  constructor(private readonly o: SequenceOutputOptions) {
    this.detokenizer = new IncrementalDetokenizer(o.tokenizer);
    // a resumed stream continues exactly where the other worker's text stopped
    this.detokenizer.prime(o.resumeTokenIds);
    this.stops = new StopStringMatcher(o.stop, { includeStop: o.includeStopString });
    this.endIds = new Set([...o.eosTokenIds, ...o.stopTokenIds]);
    this.generated = o.resumeTokenIds.length;
  }

  /** The tokens that end the sequence when generated (EOS unless ignored, and the stop ids). */
  get endTokenIds(): number[] {
    return [...this.endIds];
  }

  get numGenerated(): number {
    return this.generated;
  }

  push(tokenId: number): OutputStep {
    if (this.done) throw new Error('sequence already finished');
    const index = this.generated++;
    if (index < (this.o.minTokens ?? 0)) {
      // no stop yet, but a stop string that begins here and ends after min_tokens still
      // counts, as in vLLM (the matcher holds its beginning back)
      const { text } = this.stops.push(this.detokenizer.push(tokenId), false);
      if (this.generated >= this.o.maxTokens) return this.end({ text: text + this.flush(), index, finishReason: 'length' });
      return { text, index };
    }
    if (this.endIds.has(tokenId)) {
      // the EOS / stop token's own text is not part of the completion
      return this.end({ text: this.flush(), index, finishReason: 'stop' });
    }
    const match = this.stops.push(this.detokenizer.push(tokenId));
    if (match.stopped) return this.end({ text: match.text, index, finishReason: 'stop' });
    if (this.generated >= this.o.maxTokens) return this.end({ text: match.text + this.flush(), index, finishReason: 'length' });
    return { text: match.text, index };
  }

  /** Everything still held back, at the end of a sequence. */
  private flush(): string {
    const tail = this.stops.push(this.detokenizer.flush());
    return tail.stopped ? tail.text : tail.text + this.stops.flush();
  }

  private end(step: OutputStep): OutputStep {
    this.done = true;
    return step;
  }
}
