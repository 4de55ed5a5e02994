import { AutoGlmError } from '../../errors.js';
import { detectToolCallFormat, templateReadsTools } from './template-tool-support.js';
import type { ToolCallFormat, ToolCallParserOption } from './types.js';

/** A tool as the schema admits it (OpenAI's function tool). */
export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; [k: string]: unknown };
}

export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

/** The body fields of a chat completion that concern tools (after schema validation). */
export interface ToolRequestFields {
  tools?: ToolDefinition[] | null;
  tool_choice?: ToolChoice | null;
  parallel_tool_calls?: boolean | null;
  /** OpenAI's deprecated forms of tools and tool_choice: refused by name, not ignored. */
  functions?: unknown;
  function_call?: unknown;
}

export interface ToolCallingPlan {
  /** The tools for the chat template (`tools`, as transformers passes them); undefined when none were sent. */
  templateTools: ToolDefinition[] | undefined;
  /** How calls are read from the output; null: the output is all content. */
  format: ToolCallFormat | null;
  /** false: a choice keeps its first call only (vLLM's reading of the flag; decoding is not constrained). */
  parallelToolCalls: boolean;
}

export interface ModelToolSupport {
  /** The chat template's source, null when the model has none the server can read. */
  templateSource: string | null;
  /** --tool-call-parser. */
  parser: ToolCallParserOption;
}

/**
 * Checks a request's tool fields against what the server and model can do, and decides how
 * the output is read. What would otherwise be ignored without a word is refused instead,
 * naming the parameter: a tool_choice that needs constrained decoding, tools for a
 * template that never reads them, `auto` without a way to read calls.
 */
export function planToolCalling(body: ToolRequestFields, model: ModelToolSupport): ToolCallingPlan {
  for (const [legacy, current] of [
    ['functions', 'tools'],
    ['function_call', 'tool_choice'],
  ] as const) {
    if (body[legacy] !== undefined && body[legacy] !== null)
      throw new AutoGlmError('invalid_request', `${legacy} is OpenAI's deprecated form of ${current}: send ${current} instead.`, {
        param: legacy,
      });
  }
  const choice = body.tool_choice ?? 'auto';
  if (choice === 'required' || typeof choice === 'object') {
    const what = choice === 'required' ? "tool_choice 'required'" : `tool_choice naming a function ('${choice.function.name}')`;
    throw new AutoGlmError(
      'invalid_request',
      `${what} is not supported: forcing a call needs constrained decoding, which this server does not have. ` +
        "Send tool_choice 'auto' (the model decides whether to call) or 'none'.",
      { param: 'tool_choice' },
    );
  }
  const parallelToolCalls = body.parallel_tool_calls ?? true;
  const tools = body.tools && body.tools.length > 0 ? body.tools : undefined;
  if (tools === undefined) return { templateTools: undefined, format: null, parallelToolCalls };
  const source = model.templateSource;
  if (source === null || !templateReadsTools(source))
    throw new AutoGlmError(
      'invalid_request',
      source === null
        ? 'This model has no chat template the server can read, so tools cannot be put in its prompt.'
        : "This model's chat template does not support tools (it never reads `tools`), so they would be left out of the prompt.",
      { param: 'tools' },
    );
  if (choice === 'none') return { templateTools: tools, format: null, parallelToolCalls };
  const format = model.parser === 'auto' ? detectToolCallFormat(source) : model.parser === 'none' ? null : model.parser;
  if (format === null)
    throw new AutoGlmError(
      'invalid_request',
      "tool_choice 'auto' needs a way to read calls from the output, and " +
        (model.parser === 'none'
          ? 'this server runs with --tool-call-parser none. '
          : "this model's chat template matches no call format the server knows (hermes, llama3_json): start it with --tool-call-parser. ") +
        "Send tool_choice 'none' to get the output as text.",
      { param: 'tool_choice' },
    );
  return { templateTools: tools, format, parallelToolCalls };
}
