import type { InferenceEngine } from '../../engine/types.js';
import type { Tokenizer } from '../../engine/tokenizer/index.js';

/**
 * Tool calling needs two things from the model's tokenizer that InferenceEngine does not
 * offer: the chat template's source (which tools it reads, which call format it teaches)
 * and the text of resumed tokens exactly as the engine streamed it (special tokens left
 * out), to replay a resumed stream through the parser. Engine keeps its loaded folder
 * public, so both are read from its tokenizer; an engine without one (a test double)
 * reports no template, and tools are refused for it.
 */
interface HoldsModelFolder {
  folder: { tokenizer: Tokenizer };
}

export function modelTokenizerOf(engine: InferenceEngine): Tokenizer | null {
  const folder = (engine as Partial<HoldsModelFolder>).folder;
  return folder?.tokenizer ?? null;
}

export function chatTemplateSourceOf(engine: InferenceEngine): string | null {
  return modelTokenizerOf(engine)?.chatTemplate?.source ?? null;
}

/** The text the engine streamed for these generated tokens (its detokenizer skips special tokens). */
export async function generatedText(engine: InferenceEngine, tokenIds: readonly number[]): Promise<string> {
  const tokenizer = modelTokenizerOf(engine);
  return tokenizer ? tokenizer.decode(tokenIds, { skipSpecialTokens: true }) : engine.detokenize([...tokenIds]);
}
