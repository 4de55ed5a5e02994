import type { InferenceEngine } from '../../engine/types.js';

/** The model's chat template source, or null (no template, or an engine that does not say). */
export function chatTemplateSourceOf(engine: InferenceEngine): string | null {
  return engine.chatTemplateSource?.() ?? null;
}

/** The text the engine streamed for these generated tokens (its detokenizer skips special tokens). */
export async function generatedText(engine: InferenceEngine, tokenIds: readonly number[]): Promise<string> {
  return engine.generatedText ? engine.generatedText(tokenIds) : engine.detokenize([...tokenIds]);
}
