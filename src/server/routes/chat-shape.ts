import type { TextOfTokens } from '../reasoning/reasoning-tokens.js';
import type { ChatChoiceReader, ChoiceDelta } from './chat-choice-reader.js';
import { chatLogprobs, promptLogprobsField } from './logprobs-format.js';
import type { ResponseShape, UsageBody } from './serve-generation.js';

export interface ChatShapeOptions {
  head: { id: string; created: number; model: string; system_fingerprint: null };
  includeUsage: boolean;
  returnTokenIds: boolean;
  withLogprobs: boolean;
  topLogprobs: number;
  /** vLLM's prompt_logprobs, when asked for: alternatives per prompt token. */
  promptLogprobs?: number | undefined;
  /**
   * vLLM's include_reasoning (default true): false leaves the reasoning fields out of chunks
   * and messages; the reasoning is still read (and counted in usage), so content holds only
   * the answer either way.
   */
  includeReasoning: boolean;
  /** Each choice's reader (reasoning, tool calls) by index. */
  readers: ReadonlyMap<number, ChatChoiceReader>;
  /** The text of generated tokens, for counting reasoning tokens. */
  textOf: TextOfTokens;
}

/**
 * Chat completion chunks and bodies. A chunk carries the reasoning and content its text
 * made and the calls it completed (each call whole, in one delta); text held back (a
 * possible tag or call) is sent later, but every chunk still reports its token ids when
 * the client asked for them (a gateway resumes from exactly those), so only a chunk that
 * would carry nothing at all is left out.
 */
export function chatResponseShape(o: ChatShapeOptions): ResponseShape {
  const tokenIds = (ids: number[]): object => (o.returnTokenIds ? { token_ids: ids } : {});
  const usageNull = o.includeUsage ? { usage: null } : {};
  const readerOf = (index: number): ChatChoiceReader => o.readers.get(index)!;
  /** Without streaming: what each choice's chunks made, gathered for its message. */
  const gathered = new Map<number, ChoiceDelta>();
  return {
    opening: (index) => ({
      ...o.head,
      object: 'chat.completion.chunk',
      choices: [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null, ...tokenIds([]) }],
      ...usageNull,
    }),
    chunk: async (c) => {
      const reader = readerOf(c.index);
      const delta = reader.push(c.text, c.tokenIds, c.finishReason !== null);
      if (!o.includeReasoning) delta.reasoning = '';
      const empty = delta.reasoning === '' && delta.content === '' && delta.toolCalls.length === 0;
      if (empty && c.finishReason === null && !o.returnTokenIds && !o.withLogprobs) return null;
      return {
        ...o.head,
        object: 'chat.completion.chunk',
        choices: [
          {
            index: c.index,
            delta: {
              ...(delta.reasoning !== '' ? reasoningFields(delta.reasoning) : {}),
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
    observe: (c) => {
      const d = readerOf(c.index).push(c.text, c.tokenIds, c.finishReason !== null);
      const sum = gathered.get(c.index);
      if (!sum) gathered.set(c.index, d);
      else {
        sum.reasoning += d.reasoning;
        sum.content += d.content;
        sum.toolCalls.push(...d.toolCalls);
      }
    },
    usageChunk: async (usage) => ({
      ...o.head,
      object: 'chat.completion.chunk',
      choices: [],
      usage: await withReasoningTokens(usage, o.readers, o.textOf),
    }),
    final: async (outcomes, usage) => {
      const choices = outcomes.map((outcome) => {
        const reader = readerOf(outcome.index);
        return {
          index: outcome.index,
          message: messageOf(reader, gathered.get(outcome.index) ?? reader.push('', [], true), o.includeReasoning),
          logprobs: o.withLogprobs ? chatLogprobs(outcome.logprobs, o.topLogprobs) : null,
          finish_reason: finishReason(outcome.finishReason, reader),
          ...tokenIds(outcome.tokenIds),
        };
      });
      return {
        ...o.head,
        object: 'chat.completion',
        choices,
        usage: await withReasoningTokens(usage, o.readers, o.textOf),
        // vLLM's place for them: the response's, every choice having the same prompt
        ...promptLogprobsField(outcomes[0]?.promptLogprobs, o.promptLogprobs),
      };
    },
  };
}

/**
 * Reasoning under the name DeepSeek's API gave it and clients written for it (and for vLLM
 * until January 2026) read, `reasoning_content`, and under `reasoning`, the name vLLM uses
 * since (OpenAI's guidance for chain of thought in chat completions): the same text in both,
 * so that a client of either kind finds it.
 */
function reasoningFields(text: string): { reasoning_content: string; reasoning: string } {
  return { reasoning_content: text, reasoning: text };
}

/**
 * OpenAI's message. With tool calls read: content null when the model only called (calls
 * have no `index` here). With a reasoning parser: the reasoning fields (null when there was
 * none) and content null when nothing followed the reasoning, as vLLM answers. Otherwise
 * the output is the content as it was generated.
 */
function messageOf(reader: ChatChoiceReader, d: ChoiceDelta, includeReasoning: boolean): object {
  const calls = d.toolCalls.length > 0;
  const content = d.content === '' && (calls || reader.readsReasoning) ? null : d.content;
  return {
    role: 'assistant',
    content,
    refusal: null,
    ...(reader.readsReasoning && includeReasoning
      ? d.reasoning === ''
        ? { reasoning_content: null, reasoning: null }
        : reasoningFields(d.reasoning)
      : {}),
    ...(calls ? { tool_calls: d.toolCalls.map(({ index: _index, ...call }) => call) } : {}),
  };
}

/** OpenAI's completion_tokens_details.reasoning_tokens, summed over the choices, when a reasoning parser applied. */
async function withReasoningTokens(
  usage: UsageBody,
  readers: ReadonlyMap<number, ChatChoiceReader>,
  textOf: TextOfTokens,
): Promise<UsageBody> {
  const reading = [...readers.values()].filter((r) => r.readsReasoning);
  if (reading.length === 0) return usage;
  let reasoningTokens = 0;
  for (const r of reading) reasoningTokens += await r.reasoningTokens(textOf);
  return { ...usage, completion_tokens_details: { reasoning_tokens: reasoningTokens } };
}

/** A choice that called finishes with 'tool_calls', unless max_tokens cut it ('length' stays). */
function finishReason<F extends string | null>(finish: F, reader: ChatChoiceReader): F | 'tool_calls' {
  return finish === 'stop' && reader.called ? 'tool_calls' : finish;
}
