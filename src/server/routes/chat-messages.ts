import { AutoGlmError } from '../../errors.js';
import type { ChatMessage } from '../../engine/types.js';
import { checkJsonShape } from '../json-shape.js';

type ContentPart = { type: string; text?: string };

/** A past call in an assistant message, as OpenAI clients send it (arguments as JSON text). */
export interface BodyToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A chat message as the schema admits it (chat completions and /tokenize alike). */
export type BodyMessage = {
  role: string;
  content?: string | ContentPart[] | null;
  name?: string;
  tool_calls?: BodyToolCall[] | null;
  tool_call_id?: string;
  [k: string]: unknown;
};

/**
 * The messages the chat template gets: content parts joined into one string, and past
 * calls' arguments parsed from JSON text into values, as vLLM does: templates written for
 * transformers render them with `arguments | tojson` (Llama 3.1) and would otherwise write
 * a quoted string. A message without calls gets no `tool_calls` key, since templates test
 * `'tool_calls' in message`.
 */
export function chatMessages(messages: BodyMessage[]): ChatMessage[] {
  return messages.map((m, i) => {
    const { tool_calls: calls, ...rest } = m;
    const message: ChatMessage = { ...rest, content: flattenContent(m.content) };
    // a past turn's reasoning under vLLM's newer name: templates (Qwen3's) read reasoning_content
    if (typeof m.reasoning === 'string' && (m.reasoning_content === undefined || m.reasoning_content === null))
      message.reasoning_content = m.reasoning;
    if (calls && calls.length > 0) message.tool_calls = calls.map((c, j) => templateToolCall(c, `messages.${i}.tool_calls.${j}`));
    return message;
  });
}

function templateToolCall(call: BodyToolCall, param: string): Record<string, unknown> {
  let args: unknown;
  try {
    args = JSON.parse(call.function.arguments);
  } catch (e) {
    throw new AutoGlmError('invalid_request', `${param}.function.arguments is not valid JSON: ${(e as Error).message}.`, {
      param: `${param}.function.arguments`,
    });
  }
  // the body's own check cannot see inside this string: the template would overflow on it
  checkJsonShape(args, `${param}.function.arguments`);
  return { ...call, function: { ...call.function, arguments: args } };
}

/** OpenAI content parts: only text parts carry meaning for a text model. */
function flattenContent(content: string | ContentPart[] | null | undefined): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => (p.type === 'text' ? (p.text ?? '') : '')).join('');
}
