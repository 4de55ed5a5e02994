import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { ChatMessage, InferenceEngine } from '../engine/types.js';
import type { TokenizerPoolOptions } from './options.js';
import type { TokenizeTask } from './tokenize-worker.js';

/**
 * Turns prompts into token ids. Long inputs (chat-template rendering plus BPE over many
 * kilobytes) go to a piscina worker pool so the event loop keeps serving streams; short
 * ones are tokenized by the engine inline, where the round trip would cost more than the work.
 */
export class PromptTokenizer {
  private pool: Piscina | null;

  constructor(private readonly options: TokenizerPoolOptions | undefined) {
    const filename = options && options.threads > 0 ? workerFile() : null;
    this.pool = filename === null ? null : new Piscina({ filename, maxThreads: options!.threads, minThreads: 0, idleTimeout: 30_000 });
  }

  get pooled(): boolean {
    return this.pool !== null;
  }

  async chat(engine: InferenceEngine, messages: ChatMessage[], chatTemplateKwargs?: Record<string, unknown>): Promise<number[]> {
    const inline = (): Promise<number[]> => engine.tokenize(messages, chatTemplateKwargs ? { chatTemplateKwargs } : undefined);
    if (this.pool && templateInputChars(messages, chatTemplateKwargs) >= this.options!.minChars) {
      return this.runPooled({ modelDir: this.options!.modelDir, kind: 'chat', messages, chatTemplateKwargs }, inline);
    }
    return inline();
  }

  async text(engine: InferenceEngine, text: string, addSpecialTokens?: boolean): Promise<number[]> {
    const inline = (): Promise<number[]> => engine.tokenize(text, addSpecialTokens === undefined ? undefined : { addSpecialTokens });
    if (this.pool && text.length >= this.options!.minChars) {
      return this.runPooled({ modelDir: this.options!.modelDir, kind: 'text', text, addSpecialTokens }, inline);
    }
    return inline();
  }

  /**
   * A pool that cannot tokenize (its tokenizer failed to load) is retired; the engine takes
   * over. The input may be what failed instead (a chat template that raises, a message too
   * deeply nested to send to a thread): then the engine fails on it too, the request gets
   * that error, and the pool stays, so that one client cannot retire it for everyone.
   */
  private async runPooled(task: TokenizeTask, inline: () => Promise<number[]>): Promise<number[]> {
    try {
      return (await this.pool!.run(task)) as number[];
    } catch (poolError) {
      const ids = await inline();
      this.retire(poolError);
      return ids;
    }
  }

  private retire(error: unknown): void {
    const pool = this.pool;
    if (pool === null) return;
    this.pool = null;
    this.onPoolFailure?.(error);
    void pool.destroy();
  }

  /** Set by the server to log a retired pool. */
  onPoolFailure: ((error: unknown) => void) | null = null;

  async close(): Promise<void> {
    await this.pool?.destroy();
  }
}

/**
 * About how much text the template renders: the messages whole (contents, roles, names,
 * past calls: every field can be long, and 10^5 empty messages are as much work as a long
 * one) and the template variables (tool schemas). The body's depth was checked before
 * (json-shape.ts), so stringifying it cannot overflow.
 */
function templateInputChars(messages: ChatMessage[], kwargs: Record<string, unknown> | undefined): number {
  return JSON.stringify(messages).length + (kwargs === undefined ? 0 : JSON.stringify(kwargs).length);
}

/**
 * Worker threads need JavaScript: from the build that is the sibling file; when the server
 * runs from TypeScript sources (tests), the built copy under dist/. Null when neither exists,
 * which leaves tokenization inline rather than failing.
 */
function workerFile(): string | null {
  const here = fileURLToPath(import.meta.url);
  const candidates = here.endsWith('.ts')
    ? [fileURLToPath(new URL('../../dist/src/server/tokenize-worker.js', import.meta.url))]
    : [fileURLToPath(new URL('./tokenize-worker.js', import.meta.url))];
  return candidates.find((f) => existsSync(f)) ?? null;
}
