import type { ChatMessage } from '../engine/types.js';

/**
 * Adapter from the engine's tokenizer module (src/engine/tokenizer/) to what the worker
 * needs. Kept apart so the worker stays independent of that module's exact surface.
 */
export interface LoadedWorkerTokenizer {
  tokenizeText(text: string, addSpecialTokens: boolean | undefined): Promise<number[]>;
  tokenizeChat(messages: ChatMessage[], kwargs: Record<string, unknown> | undefined): Promise<number[]>;
}

export async function loadWorkerTokenizer(modelDir: string): Promise<LoadedWorkerTokenizer> {
  // Resolved at run time: the tokenizer module is another engineer's and may not exist in a given build.
  const specifier = '../engine/tokenizer/index.js';
  const mod = (await import(specifier)) as { loadTokenizer: (dir: string) => Promise<unknown> };
  const tok = (await mod.loadTokenizer(modelDir)) as {
    encode(text: string, options: { addSpecialTokens: boolean }): number[] | Promise<number[]>;
    encodeChat(messages: ChatMessage[], options: Record<string, unknown>): number[] | Promise<number[]>;
  };
  // The same defaults as Engine.tokenize, so pooled and inline tokenization agree.
  return {
    tokenizeText: async (text, addSpecialTokens) => tok.encode(text, { addSpecialTokens: addSpecialTokens ?? true }),
    tokenizeChat: async (messages, kwargs) => tok.encodeChat(messages, { addGenerationPrompt: true, ...kwargs }),
  };
}
