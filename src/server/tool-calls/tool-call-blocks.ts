import { partialTagLength, TextAroundCalls } from './text-around-calls.js';
import type { ParsedToolCall, ToolCallEvent, ToolCallStreamParser } from './types.js';

const OPEN = '<tool_call>';
const CLOSE = '</tool_call>';

/**
 * Calls each written between `<tool_call>` and `</tool_call>`, with text before, between or
 * after; `readBody` reads what a block holds (hermes: a JSON object, glm45: tagged
 * arguments). A block only becomes a call once it closes and its body reads as one;
 * otherwise (a body that does not read, or a block cut off by max_tokens) the block stays
 * text, tags included.
 */
export class ToolCallBlocksParser implements ToolCallStreamParser {
  /** Text not yet decided: after the last call or text released, or inside an open block. */
  private pending = '';
  private inCall = false;
  /** How far into `pending` an open block has been searched for its close. */
  private searched = 0;
  private readonly around = new TextAroundCalls();

  constructor(private readonly readBody: (body: string) => ParsedToolCall | null) {}

  push(text: string): ToolCallEvent[] {
    this.pending += text;
    const events: ToolCallEvent[] = [];
    for (;;) {
      if (!this.inCall) {
        const open = this.pending.indexOf(OPEN);
        if (open < 0) {
          // the end may be the start of a tag still arriving: hold it back
          const release = this.pending.length - partialTagLength(this.pending, OPEN);
          events.push(...this.around.text(this.pending.slice(0, release)));
          this.pending = this.pending.slice(release);
          return events;
        }
        events.push(...this.around.text(this.pending.slice(0, open)));
        this.pending = this.pending.slice(open + OPEN.length);
        this.inCall = true;
        this.searched = 0;
      } else {
        const close = this.pending.indexOf(CLOSE, this.searched);
        if (close < 0) {
          this.searched = Math.max(0, this.pending.length - CLOSE.length + 1);
          return events;
        }
        const body = this.pending.slice(0, close);
        this.pending = this.pending.slice(close + CLOSE.length);
        this.inCall = false;
        const call = this.readBody(body);
        events.push(...(call ? this.around.call(call) : this.around.text(OPEN + body + CLOSE)));
      }
    }
  }

  end(): ToolCallEvent[] {
    const rest = this.inCall ? OPEN + this.pending : this.pending;
    this.pending = '';
    this.inCall = false;
    return [...this.around.text(rest), ...this.around.end()];
  }
}
