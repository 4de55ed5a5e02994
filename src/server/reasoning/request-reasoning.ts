import type { InferenceEngine, ReasoningTags } from '../../engine/types.js';
import { chatTemplateSourceOf } from '../tool-calls/model-tokenizer.js';
import { detectReasoningParser, outputOpening } from './template-reasoning.js';
import { THINK_END, THINK_START, type OutputOpening, type ReasoningParserName, type ReasoningParserOption } from './types.js';

/** How a chat completion's output is read for reasoning; null: it is all content (no parser applies). */
export interface ReasoningPlan {
  parser: ReasoningParserName;
  opening: OutputOpening;
}

/**
 * The prompt's last tokens that are read for its `<think>` tags: a generation prompt writes
 * them in its last few. Reasoning a client prefilled further back than this is not found.
 */
const PROMPT_TAIL_TOKENS = 256;

/** Which parser applies (--reasoning-parser, or the template's under auto) and where this prompt's output begins. */
export async function planReasoning(
  engine: InferenceEngine,
  option: ReasoningParserOption,
  promptTokenIds: readonly number[],
): Promise<ReasoningPlan | null> {
  const parser = option === 'auto' ? detectReasoningParser(chatTemplateSourceOf(engine)) : option === 'none' ? null : option;
  if (parser === null) return null;
  // with special tokens: the tags are written whether or not the tokenizer counts them special
  const tail = await engine.detokenize(promptTokenIds.slice(-PROMPT_TAIL_TOKENS));
  return { parser, opening: outputOpening(tail, parser) };
}

/**
 * The engine's reasoning tags for a constrained request (response_format, or a tool_choice
 * that requires a call): the constraint then applies to the answer after the reasoning, as
 * vLLM's does. None when the output cannot reason (no parser, or thinking is off).
 */
export function formatAfterReasoning(plan: ReasoningPlan | null): ReasoningTags | undefined {
  if (plan === null || plan.opening === 'content') return undefined;
  return { start: THINK_START, end: THINK_END, startsInside: plan.opening === 'reasoning' };
}
