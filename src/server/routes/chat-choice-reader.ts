import type { ReasoningSplitter } from '../reasoning/reasoning-splitter.js';
import { ReasoningTokenCounter, type TextOfTokens } from '../reasoning/reasoning-tokens.js';
import type { ChoiceToolCalls, ResponseToolCall } from '../tool-calls/choice-tool-calls.js';

/** What a piece of a choice's output adds to its message: reasoning, content, and calls that completed in it. */
export interface ChoiceDelta {
  reasoning: string;
  content: string;
  toolCalls: ResponseToolCall[];
}

/**
 * Reads one chat choice's output: reasoning first (when a reasoning parser applies), and
 * tool calls from the content after it only, so a `<tool_call>` the model writes while
 * thinking stays reasoning text. Without either, the text is all content, unchanged.
 */
export class ChatChoiceReader {
  private readonly tokens: ReasoningTokenCounter | null;

  constructor(
    private readonly reasoning: ReasoningSplitter | null,
    private readonly toolCalls: ChoiceToolCalls | null,
  ) {
    this.tokens = reasoning ? new ReasoningTokenCounter() : null;
  }

  /** A reasoning parser applies: the message has a reasoning field, and usage counts reasoning tokens. */
  get readsReasoning(): boolean {
    return this.reasoning !== null;
  }

  /** True once a call was read (replayed ones included): the choice then finishes with 'tool_calls'. */
  get called(): boolean {
    return this.toolCalls?.called ?? false;
  }

  /**
   * Output the client already has (a resumed stream's earlier tokens, sent by another
   * worker): the readers take it up to where that worker was, and nothing is returned.
   */
  replay(text: string, tokenIds: readonly number[]): void {
    this.tokens?.add(text, tokenIds);
    const content = this.reasoning ? this.reasoning.push(text).content : text;
    this.toolCalls?.replay(content);
  }

  /** The next piece of output; once it `ended`, also what the readers held back. */
  push(text: string, tokenIds: readonly number[], ended: boolean): ChoiceDelta {
    this.tokens?.add(text, tokenIds);
    const split = this.reasoning ? this.reasoning.push(text) : { reasoning: '', content: text };
    if (ended && this.reasoning) {
      const rest = this.reasoning.end();
      split.reasoning += rest.reasoning;
      split.content += rest.content;
    }
    if (!this.toolCalls) return { ...split, toolCalls: [] };
    const read = this.toolCalls.push(split.content);
    const toolCalls = [...read.toolCalls];
    let content = read.content;
    if (ended) {
      const rest = this.toolCalls.end();
      content += rest.content;
      toolCalls.push(...rest.toolCalls);
    }
    return { reasoning: split.reasoning, content, toolCalls };
  }

  /** Tokens of the reasoning so far (all of the output's, once it ended); 0 without a reasoning parser. */
  async reasoningTokens(textOf: TextOfTokens): Promise<number> {
    const span = this.reasoning?.reasoningSpan;
    return span && this.tokens ? this.tokens.count(span, textOf) : 0;
  }
}
