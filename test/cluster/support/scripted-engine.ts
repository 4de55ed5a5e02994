/**
 * A deterministic stand-in for the GPU engine, used by cluster tests when the real engine
 * is not built (and to make worker deaths land mid-stream reliably): token i of a request
 * is a pure function of (prompt ids, seed, i), exactly the property resume relies on in
 * the real engine. It runs inside the real server (buildServer) in a real process.
 */
import type {
  ChatMessage,
  CompletionResult,
  EngineStats,
  GenerateRequest,
  InferenceEngine,
  TokenEvent,
} from '../../../src/engine/types.js';

export class ScriptedEngine implements InferenceEngine {
  readonly modelName = 'demo-stories';
  readonly contextLength = 512;
  private running = 0;
  private generated = 0;

  constructor(private readonly tokenDelayMs: number) {}

  async *generate(r: GenerateRequest): AsyncIterable<TokenEvent> {
    const prompt =
      Array.isArray(r.prompt) && typeof r.prompt[0] === 'number' ? (r.prompt as number[]) : await this.tokenize(r.prompt as string);
    const max = r.maxTokens ?? 16;
    // greedy output does not depend on the seed (the gateway adds one to every request it relays)
    const seed = r.sampling?.temperature === 0 ? 0 : (r.sampling?.seed ?? 0);
    let h = seed >>> 0;
    for (const t of prompt) h = (Math.imul(h ^ t, 0x01000193) + 0x9e3779b9) >>> 0;
    this.running++;
    try {
      for (let i = r.resumeTokenIds?.length ?? 0; i < max; i++) {
        if (r.signal?.aborted) return;
        await new Promise((res) => setTimeout(res, this.tokenDelayMs));
        const id = 97 + (((h ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0) % 26);
        this.generated++;
        const last = i === max - 1;
        yield {
          text: String.fromCharCode(id),
          tokenId: id,
          index: i,
          ...(last
            ? { finishReason: 'length' as const, usage: { promptTokens: prompt.length, completionTokens: max, cachedPromptTokens: 0 } }
            : {}),
        };
      }
    } finally {
      this.running--;
    }
  }

  async complete(r: GenerateRequest): Promise<CompletionResult> {
    let text = '';
    const tokenIds: number[] = [];
    let usage = { promptTokens: 0, completionTokens: 0, cachedPromptTokens: 0 };
    for await (const e of this.generate(r)) {
      text += e.text;
      tokenIds.push(e.tokenId);
      if (e.usage) usage = e.usage;
    }
    return { text, tokenIds, finishReason: 'length', usage };
  }

  async tokenize(input: string | ChatMessage[]): Promise<number[]> {
    const s = typeof input === 'string' ? input : input.map((m) => `${m.role}: ${m.content}\n`).join('') + 'assistant: ';
    return [...Buffer.from(s, 'utf8')];
  }

  async detokenize(ids: number[]): Promise<string> {
    return Buffer.from(ids.filter((i) => i < 256)).toString('utf8');
  }

  stats(): EngineStats {
    return {
      modelName: this.modelName,
      adapterName: 'scripted',
      waiting: 0,
      running: this.running,
      kvBlocksTotal: 1,
      kvBlocksUsed: 0,
      kvBlocksFree: 1,
      kvBlockSize: 16,
      prefixCacheQueries: 0,
      prefixCacheHits: 0,
      responseCacheHits: 0,
      responseCacheMisses: 0,
      preemptions: 0,
      promptTokens: 0,
      generationTokens: this.generated,
      finishedRequests: 0,
      timeToFirstTokenMsSum: 0,
      timePerOutputTokenMsSum: 0,
      prefillSteps: 0,
      prefillStepMsSum: 0,
      prefillStepRows: 0,
      decodeSteps: 0,
      decodeStepMsSum: 0,
      decodeStepRows: 0,
      constrainedRequests: 0,
      tokenMaskQueries: 0,
      tokenMaskCacheHits: 0,
      specDecodeDrafts: 0,
      specDecodeDraftTokens: 0,
      specDecodeAcceptedTokens: 0,
    };
  }

  async close(): Promise<void> {}
}
