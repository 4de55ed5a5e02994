import type { ChoiceOutcome } from '../generation.js';
import type { ChoiceToolCalls, ToolCallDelta } from '../tool-calls/choice-tool-calls.js';
import { chatLogprobs } from './logprobs-format.js';
import type { ResponseShape } from './serve-generation.js';

export interface ChatShapeOptions {
  head: { id: string; created: number; model: string; system_fingerprint: null };
  includeUsage: boolean;
  returnTokenIds: boolean;
  withLogprobs: boolean;
  topLogprobs: number;
  /** Each choice's tool-call reader by index; null when the output is all content. */
  toolCalls: ReadonlyMap<number, ChoiceToolCalls> | null;
}

/**
 * Chat completion chunks and bodies. With tool calls read, a chunk carries the content and
 * the calls its text completed (each call whole, in one delta); text held back as a
 * possible call is sent later, but every chunk still reports its token ids when the client
 * asked for them (a gateway resumes from exactly those), so only a chunk that would carry
 * nothing at all is left out.
 */
export function chatResponseShape(o: ChatShapeOptions): ResponseShape {
  const tokenIds = (ids: number[]): object => (o.returnTokenIds ? { token_ids: ids } : {});
  const usageNull = o.includeUsage ? { usage: null } : {};
  return {
    opening: (index) => ({
      ...o.head,
      object: 'chat.completion.chunk',
      choices: [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null, ...tokenIds([]) }],
      ...usageNull,
    }),
    chunk: async (c) => {
      const reader = o.toolCalls?.get(c.index);
      const delta = reader ? readText(reader, c.text, c.finishReason !== null) : { content: c.text, toolCalls: [] };
      const empty = delta.content === '' && delta.toolCalls.length === 0;
      if (empty && c.finishReason === null && !o.returnTokenIds && !o.withLogprobs) return null;
      return {
        ...o.head,
        object: 'chat.completion.chunk',
        choices: [
          {
            index: c.index,
            delta: {
              ...(delta.content !== '' ? { content: delta.content } : {}),
              ...(delta.toolCalls.length > 0 ? { tool_calls: delta.toolCalls } : {}),
            },
            logprobs: o.withLogprobs ? chatLogprobs(c.logprobs, o.topLogprobs) : null,
            finish_reason: finishReason(c.finishReason, reader),
            ...tokenIds(c.tokenIds),
          },
        ],
        ...usageNull,
      };
    },
    usageChunk: (usage) => ({ ...o.head, object: 'chat.completion.chunk', choices: [], usage }),
    final: async (outcomes, usage) => ({
      ...o.head,
      object: 'chat.completion',
      choices: outcomes.map((outcome) => {
        const reader = o.toolCalls?.get(outcome.index);
        return {
          index: outcome.index,
          message: reader ? messageWithCalls(reader, outcome) : { role: 'assistant', content: outcome.text, refusal: null },
          logprobs: o.withLogprobs ? chatLogprobs(outcome.logprobs, o.topLogprobs) : null,
          finish_reason: finishReason(outcome.finishReason, reader),
          ...tokenIds(outcome.tokenIds),
        };
      }),
      usage,
    }),
  };
}

/** The choice's next text; once it `ended`, also what the reader held back. */
function readText(reader: ChoiceToolCalls, text: string, ended: boolean): ToolCallDelta {
  const delta = reader.push(text);
  if (!ended) return delta;
  const rest = reader.end();
  return { content: delta.content + rest.content, toolCalls: [...delta.toolCalls, ...rest.toolCalls] };
}

/** OpenAI's message: content null when the model only called (calls have no `index` here). */
function messageWithCalls(reader: ChoiceToolCalls, outcome: ChoiceOutcome): object {
  const { content, toolCalls } = readText(reader, outcome.text, true);
  if (toolCalls.length === 0) return { role: 'assistant', content, refusal: null };
  return {
    role: 'assistant',
    content: content === '' ? null : content,
    refusal: null,
    tool_calls: toolCalls.map(({ index: _index, ...call }) => call),
  };
}

/** A choice that called finishes with 'tool_calls', unless max_tokens cut it ('length' stays). */
function finishReason<F extends string | null>(finish: F, reader: ChoiceToolCalls | undefined): F | 'tool_calls' {
  return finish === 'stop' && reader?.called ? 'tool_calls' : finish;
}
