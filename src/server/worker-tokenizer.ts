import type { ChatMessage } from '../engine/types.js';
import { loadTokenizer } from '../engine/tokenizer/index.js';

/**
 * The worker's view of the model's tokenizer, with the same defaults as Engine.tokenize
 * (text: special tokens added; chat: template applied with the generation prompt), so
 * pooled and inline tokenization give identical ids.
 */
export interface LoadedWorkerTokenizer {
  tokenizeText(text: string, addSpecialTokens: boolean | undefined): number[];
  tokenizeChat(messages: ChatMessage[], kwargs: Record<string, unknown> | undefined): number[];
}

export async function loadWorkerTokenizer(modelDir: string): Promise<LoadedWorkerTokenizer> {
  const tok = await loadTokenizer(modelDir);
  return {
    tokenizeText: (text, addSpecialTokens) => tok.encode(text, { addSpecialTokens: addSpecialTokens ?? true }),
    tokenizeChat: (messages, kwargs) => tok.applyChatTemplate(messages, { addGenerationPrompt: true, ...kwargs }),
  };
}
