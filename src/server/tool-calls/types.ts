/** A call read from the model's output: the function's name and its arguments as JSON text. */
export interface ParsedToolCall {
  name: string;
  arguments: string;
}

/** What a parser makes of output text: text for `content`, or a complete call. */
export type ToolCallEvent = { kind: 'text'; text: string } | { kind: 'call'; call: ParsedToolCall };

/**
 * Reads tool calls from output text as it streams. push() takes the text in any split; the
 * events returned once a prefix has been pushed depend on that prefix only, never on how
 * it was split, which is what lets a resumed stream replay the tokens another worker sent
 * in one piece and be exactly where that worker was. Text that may still turn out to be
 * part of a call is held back; end() releases whatever is left as text.
 */
export interface ToolCallStreamParser {
  push(text: string): ToolCallEvent[];
  end(): ToolCallEvent[];
}

/** The output formats the server reads (vLLM's parser names). */
export const TOOL_CALL_FORMATS = ['hermes', 'llama3_json', 'glm45'] as const;
export type ToolCallFormat = (typeof TOOL_CALL_FORMATS)[number];

/** --tool-call-parser: a format, `auto` (from the chat template) or `none` (never parse). */
export const TOOL_CALL_PARSER_OPTIONS = ['auto', ...TOOL_CALL_FORMATS, 'none'] as const;
export type ToolCallParserOption = (typeof TOOL_CALL_PARSER_OPTIONS)[number];
