import { partialTagLength } from '../tool-calls/text-around-calls.js';
import { THINK_END, THINK_START, type OutputOpening, type ReasoningDelta } from './types.js';

/**
 * Splits a choice's output into reasoning and content as it streams, the way vLLM's qwen3
 * and deepseek_r1 reasoning parsers read it: reasoning runs up to `</think>` (all of the
 * output is reasoning when it never comes, a generation cut by max_tokens), the tags
 * themselves belong to neither, and the content is everything after the end tag exactly as
 * written (the "\n\n" Qwen writes after it included, as vLLM leaves it). A `<think>` is
 * looked for only as the output's very first text (see OutputOpening).
 *
 * push() takes text in any split; what has been returned once a prefix was pushed depends
 * on that prefix only, never on how it was split, so a resumed stream that replays the text
 * another worker sent is exactly where that worker was. Text that may be the beginning of a
 * tag is held back until the next text decides; end() releases it.
 */
export class ReasoningSplitter {
  private phase: 'opening' | 'reasoning' | 'content';
  /** Text pushed and not yet returned. */
  private pending = '';
  /** Offset in the whole output of pending's first character. */
  private pendingAt = 0;
  private reasoningFrom: number | null = null;
  private reasoningTo: number | null = null;

  constructor(private readonly opening: OutputOpening) {
    this.phase = opening === 'content' ? 'content' : 'opening';
  }

  push(text: string): ReasoningDelta {
    this.pending += text;
    const delta: ReasoningDelta = { reasoning: '', content: '' };
    for (;;) {
      switch (this.phase) {
        case 'opening': {
          // the output's first text decides whether it opens with the start tag
          if (THINK_START.startsWith(this.pending) && this.pending.length < THINK_START.length) return delta;
          if (this.pending.startsWith(THINK_START)) {
            this.take(THINK_START.length);
            this.beginReasoning();
          } else if (this.opening === 'reasoning') this.beginReasoning();
          else this.phase = 'content';
          continue;
        }
        case 'reasoning': {
          const end = this.pending.indexOf(THINK_END);
          if (end < 0) {
            delta.reasoning += this.take(this.pending.length - partialTagLength(this.pending, THINK_END));
            return delta;
          }
          delta.reasoning += this.take(end);
          this.reasoningTo = this.pendingAt;
          this.take(THINK_END.length);
          this.phase = 'content';
          continue;
        }
        case 'content':
          delta.content += this.take(this.pending.length);
          return delta;
      }
    }
  }

  /** The output has ended: text held back as a possible tag is what it was read as so far. */
  end(): ReasoningDelta {
    const rest = this.take(this.pending.length);
    if (this.phase === 'opening' && this.opening === 'reasoning') this.beginReasoning();
    if (this.phase === 'reasoning') {
      this.reasoningTo = this.pendingAt;
      return { reasoning: rest, content: '' };
    }
    return { reasoning: '', content: rest };
  }

  /** True once the output is known to hold reasoning (its text may still be empty). */
  get reasoned(): boolean {
    return this.reasoningFrom !== null;
  }

  /**
   * Where the reasoning text lies in the output, as character offsets [from, to) (tags left
   * out); `to` is null while it is still open. Null when the output has no reasoning.
   */
  get reasoningSpan(): { from: number; to: number | null } | null {
    return this.reasoningFrom === null ? null : { from: this.reasoningFrom, to: this.reasoningTo };
  }

  private beginReasoning(): void {
    this.phase = 'reasoning';
    this.reasoningFrom = this.pendingAt;
  }

  private take(n: number): string {
    const out = this.pending.slice(0, n);
    this.pending = this.pending.slice(n);
    this.pendingAt += n;
    return out;
  }
}
