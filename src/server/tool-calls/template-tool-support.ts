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
 * rendering of past calls writes: Qwen's and Hermes' `<tool_call>`, Llama 3.1 / 3.2's
 * `<|python_tag|>` or `"parameters": `. Null: none known (tools can still be rendered,
 * but calls cannot be read without --tool-call-parser).
 */
export function detectToolCallFormat(source: string): ToolCallFormat | null {
  if (!templateReadsTools(source)) return null;
  if (source.includes('<tool_call>')) return 'hermes';
  if (source.includes('<|python_tag|>') || source.includes('"parameters": ')) return 'llama3_json';
  return null;
}
