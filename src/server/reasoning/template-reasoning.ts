import { THINK_END, THINK_START, type OutputOpening, type ReasoningParserName } from './types.js';

/**
 * The reasoning parser a chat template calls for (--reasoning-parser auto): one that writes
 * `<think>` (Qwen3's, DeepSeek-R1's, which open or close the reasoning in the generation
 * prompt or strip it from past turns) gets one; DeepSeek's, recognised by its
 * `<｜Assistant｜>` marker, gets deepseek_r1, any other qwen3. Null: the output is all content.
 */
export function detectReasoningParser(templateSource: string | null): ReasoningParserName | null {
  if (templateSource === null || !templateSource.includes(THINK_START)) return null;
  return templateSource.includes('<｜Assistant｜>') ? 'deepseek_r1' : 'qwen3';
}

/**
 * Where the output begins, read from the end of the rendered prompt:
 * - a `<think>` left open there (DeepSeek-R1's and Qwen3's thinking templates end the
 *   generation prompt with `<think>\n`): the output begins inside reasoning;
 * - the prompt ending with a closed one (Qwen3 with enable_thinking false writes
 *   `<think>\n\n</think>\n\n`): thinking is off and the output is all content;
 * - neither: deepseek_r1 takes the output as reasoning up to `</think>` (DeepSeek-R1's
 *   first template left the tag to the model, and vLLM's parser assumes it), qwen3 as
 *   content unless it opens with `<think>` itself (Qwen3's first template).
 */
export function outputOpening(promptTail: string, parser: ReasoningParserName): OutputOpening {
  const lastStart = promptTail.lastIndexOf(THINK_START);
  const lastEnd = promptTail.lastIndexOf(THINK_END);
  if (lastStart > lastEnd) return 'reasoning';
  if (lastEnd >= 0 && promptTail.slice(lastEnd + THINK_END.length).trim() === '') return 'content';
  return parser === 'deepseek_r1' ? 'reasoning' : 'may-open';
}
