/**
 * piscina worker: loads the model's tokenizer once per thread and tokenizes text or
 * templated chat messages, exactly as engine.tokenize would.
 */
import type { ChatMessage } from '../engine/types.js';

export type TokenizeTask =
  | { modelDir: string; kind: 'text'; text: string; addSpecialTokens?: boolean | undefined }
  | { modelDir: string; kind: 'chat'; messages: ChatMessage[]; chatTemplateKwargs?: Record<string, unknown> | undefined };

interface WorkerTokenizer {
  tokenizeText(text: string, addSpecialTokens: boolean | undefined): number[] | Promise<number[]>;
  tokenizeChat(messages: ChatMessage[], kwargs: Record<string, unknown> | undefined): number[] | Promise<number[]>;
}

const loaded = new Map<string, Promise<WorkerTokenizer>>();

export default async function tokenize(task: TokenizeTask): Promise<number[]> {
  let tokenizer = loaded.get(task.modelDir);
  if (!tokenizer) {
    tokenizer = load(task.modelDir);
    loaded.set(task.modelDir, tokenizer);
  }
  const t = await tokenizer;
  return task.kind === 'text' ? t.tokenizeText(task.text, task.addSpecialTokens) : t.tokenizeChat(task.messages, task.chatTemplateKwargs);
}

async function load(modelDir: string): Promise<WorkerTokenizer> {
  const { loadWorkerTokenizer } = await import('./worker-tokenizer.js');
  return loadWorkerTokenizer(modelDir);
}
