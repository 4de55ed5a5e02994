/** The reasoning formats the server reads (vLLM's parser names): both write `<think> … </think>` before the answer. */
export const REASONING_PARSERS = ['qwen3', 'deepseek_r1'] as const;
export type ReasoningParserName = (typeof REASONING_PARSERS)[number];

/** --reasoning-parser: a parser, `auto` (from the chat template) or `none` (the output is all content). */
export const REASONING_PARSER_OPTIONS = ['auto', ...REASONING_PARSERS, 'none'] as const;
export type ReasoningParserOption = (typeof REASONING_PARSER_OPTIONS)[number];

/** The tags both parsers read. */
export const THINK_START = '<think>';
export const THINK_END = '</think>';

/**
 * Where a choice's output begins, as the prompt and parser say:
 * - 'reasoning': inside reasoning (a `<think>` the model may repeat at its very start is dropped);
 * - 'may-open': content, unless the output's very first text is `<think>`;
 * - 'content': content throughout (the prompt closed the reasoning: thinking is off).
 */
export type OutputOpening = 'reasoning' | 'may-open' | 'content';

/** What the reader returns for a piece of output: the text that became reasoning, and that which became content. */
export interface ReasoningDelta {
  reasoning: string;
  content: string;
}
