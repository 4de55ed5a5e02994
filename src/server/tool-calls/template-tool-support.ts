import type { ToolCallFormat } from './types.js';

/**
 * What a chat template's source says about tools. A template that never reads `tools`
 * would drop them from the prompt without a word, so the server refuses tools for it.
 */
export function templateReadsTools(source: string): boolean {
  return /\btools\b/.test(source);
}

/**
 * The call format a template teaches its model, from the markers its tool prompt or its
 * rendering of past calls writes: GLM-4.5's `<arg_key>` (its calls also sit in
 * `<tool_call>`, so it is looked for first), Qwen's and Hermes' `<tool_call>`, Llama 3.1 /
 * 3.2's `<|python_tag|>` or `"parameters": `. Null: none known (tools can still be
 * rendered, but calls cannot be read without --tool-call-parser).
 */
export function detectToolCallFormat(source: string): ToolCallFormat | null {
  if (!templateReadsTools(source)) return null;
  if (source.includes('<arg_key>')) return 'glm45';
  if (source.includes('<tool_call>')) return 'hermes';
  if (source.includes('<|python_tag|>') || source.includes('"parameters": ')) return 'llama3_json';
  return null;
}
