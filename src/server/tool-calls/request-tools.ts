import { AutoGlmError } from '../../errors.js';
import { checkTemplateKwargs } from '../../engine/tokenizer/template-kwargs.js';
import type { ToolCallsFormat } from '../../engine/types.js';
import { detectToolCallFormat, templateReadsTools } from './template-tool-support.js';
import { TOOL_CALL_FORMATS, type ToolCallFormat, type ToolCallParserOption } from './types.js';

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
  /** false: a choice keeps its first call only (with 'auto' decoding is not constrained: vLLM's reading of the flag). */
  parallelToolCalls: boolean;
  /**
   * tool_choice 'required' or a named function: the engine constraint that makes the output
   * nothing but calls in `format` (of that function only, when named); undefined otherwise.
   */
  forcedCalls: ToolCallsFormat | undefined;
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
 * naming the parameter: tools for a template that never reads them, a choice that calls
 * without a way to read calls, 'required' or a named function without such a tool.
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
  const what =
    typeof choice === 'object' ? `tool_choice naming a function ('${choice.function.name.slice(0, 64)}')` : `tool_choice '${choice}'`;
  const parallelToolCalls = body.parallel_tool_calls ?? true;
  const tools = body.tools && body.tools.length > 0 ? body.tools : undefined;
  if (tools === undefined) {
    if (choice === 'required' || typeof choice === 'object')
      throw new AutoGlmError('invalid_request', `${what} needs tools to call: send them in tools.`, { param: 'tool_choice' });
    return { templateTools: undefined, format: null, parallelToolCalls, forcedCalls: undefined };
  }
  const source = model.templateSource;
  if (source === null || !templateReadsTools(source))
    throw new AutoGlmError(
      'invalid_request',
      source === null
        ? 'This model has no chat template the server can read, so tools cannot be put in its prompt.'
        : "This model's chat template does not support tools (it never reads `tools`), so they would be left out of the prompt.",
      { param: 'tools' },
    );
  if (choice === 'none') return { templateTools: tools, format: null, parallelToolCalls, forcedCalls: undefined };
  const format = model.parser === 'auto' ? detectToolCallFormat(source) : model.parser === 'none' ? null : model.parser;
  if (format === null)
    throw new AutoGlmError(
      'invalid_request',
      `${what} needs a way to read calls from the output, and ` +
        (model.parser === 'none'
          ? 'this server runs with --tool-call-parser none. '
          : `this model's chat template matches no call format the server knows (${TOOL_CALL_FORMATS.join(', ')}): start it with --tool-call-parser. `) +
        "Send tool_choice 'none' to get the output as text.",
      { param: 'tool_choice' },
    );
  if (typeof choice === 'object' && !tools.some((t) => t.function.name === choice.function.name))
    throw new AutoGlmError('invalid_request', `${what}: no tool of that name is in tools.`, { param: 'tool_choice' });
  const forcedCalls = choice === 'auto' ? undefined : forcedCallsFormat(tools, format, parallelToolCalls, choice);
  return { templateTools: tools, format, parallelToolCalls, forcedCalls };
}

/** The engine constraint for a choice that must call: the request's tools in its order (errors name them by index). */
function forcedCallsFormat(
  tools: ToolDefinition[],
  syntax: ToolCallFormat,
  parallel: boolean,
  choice: 'required' | { function: { name: string } },
): ToolCallsFormat {
  return {
    type: 'tool_calls',
    syntax,
    tools: tools.map((t) => ({ name: t.function.name, parameters: t.function.parameters })),
    ...(typeof choice === 'object' ? { forcedName: choice.function.name } : {}),
    parallel,
  };
}

/**
 * The chat template's variables for a request: the client's chat_template_kwargs plus the
 * planned `tools`, which win over a `tools` among them (they were checked). Chat completions
 * and /tokenize both template with these, so a prompt counts what it will run as.
 */
export function templateKwargs(
  clientKwargs: Record<string, unknown> | null | undefined,
  tools: ToolCallingPlan,
): Record<string, unknown> | undefined {
  checkTemplateKwargs(clientKwargs, tools.templateTools !== undefined);
  if (tools.templateTools === undefined) return clientKwargs ?? undefined;
  return { ...clientKwargs, tools: tools.templateTools };
}
