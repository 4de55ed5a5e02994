import type { ParsedToolCall, ToolCallEvent } from './types.js';

/**
 * The text around calls, as it becomes `content`. Whitespace that only separates text from
 * a call is layout (the newline a template writes before `<tool_call>`, the one after
 * `</tool_call>`), not something the model said: whitespace right after a call is dropped,
 * and whitespace before one is kept only as the separator from text that follows the
 * call. All other text passes unchanged; output without calls comes out exactly as
 * generated. Trailing whitespace is therefore held until it is known what follows it.
 */
export class TextAroundCalls {
  /** Whitespace at the end of the text so far, not yet given out. */
  private held = '';
  /** Whitespace that came before the last run of calls: given out if text follows them. */
  private separator = '';
  private afterCall = false;

  text(text: string): ToolCallEvent[] {
    let t = text;
    if (this.afterCall) {
      t = t.trimStart();
      if (t === '') return [];
      this.afterCall = false;
      this.held = this.separator;
      this.separator = '';
    }
    const all = this.held + t;
    const kept = all.trimEnd();
    this.held = all.slice(kept.length);
    return kept === '' ? [] : [{ kind: 'text', text: kept }];
  }

  call(call: ParsedToolCall): ToolCallEvent[] {
    if (!this.afterCall) this.separator = this.held;
    this.held = '';
    this.afterCall = true;
    return [{ kind: 'call', call }];
  }

  /** Nothing follows: whitespace after the last text is text; whitespace before a last call is not. */
  end(): ToolCallEvent[] {
    const held = this.afterCall ? '' : this.held;
    this.held = '';
    this.separator = '';
    return held === '' ? [] : [{ kind: 'text', text: held }];
  }
}

/** Length of the longest end of `text` that begins `tag` (a tag that may be arriving in pieces). */
export function partialTagLength(text: string, tag: string): number {
  for (let k = Math.min(tag.length - 1, text.length); k > 0; k--) if (text.endsWith(tag.slice(0, k))) return k;
  return 0;
}
