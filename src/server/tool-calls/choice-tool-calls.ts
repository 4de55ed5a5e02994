import { randomBytes } from 'node:crypto';
import type { ToolCallEvent, ToolCallStreamParser } from './types.js';

/** A call as the response carries it (OpenAI's shape; `index` in streamed deltas only). */
export interface ResponseToolCall {
  index: number;
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** What one piece of output adds to a choice: content, and calls that completed in it. */
export interface ToolCallDelta {
  content: string;
  toolCalls: ResponseToolCall[];
}

/**
 * One choice's output read through a tool-call parser: numbers its calls from 0 (across a
 * resume too, since replayed calls count), gives each an id, and keeps only the first
 * when parallel calls were not allowed.
 */
export class ChoiceToolCalls {
  private calls = 0;

  constructor(
    private readonly parser: ToolCallStreamParser,
    private readonly options: { parallelToolCalls: boolean },
  ) {}

  /** True once a call was read (replayed ones included): the choice then finishes with 'tool_calls'. */
  get called(): boolean {
    return this.calls > 0;
  }

  /**
   * Text the client already has (tokens another worker sent before a resume): the parser
   * takes it up to where that worker was, and nothing is returned for it.
   */
  replay(text: string): void {
    this.collect(this.parser.push(text));
  }

  push(text: string): ToolCallDelta {
    return this.collect(this.parser.push(text));
  }

  /** The output has ended: whatever the parser still holds. */
  end(): ToolCallDelta {
    return this.collect(this.parser.end());
  }

  private collect(events: ToolCallEvent[]): ToolCallDelta {
    const delta: ToolCallDelta = { content: '', toolCalls: [] };
    for (const e of events) {
      if (e.kind === 'text') delta.content += e.text;
      else if (this.options.parallelToolCalls || this.calls === 0)
        delta.toolCalls.push({ index: this.calls++, id: newToolCallId(), type: 'function', function: { ...e.call } });
    }
    return delta;
  }
}

/** OpenAI's form: `call_` and 24 characters. */
export function newToolCallId(): string {
  return `call_${randomBytes(12).toString('hex')}`;
}
