/**
 * llama.cpp as a peer, through node-llama-cpp, an optional dependency: loaded with a
 * dynamic import so the project builds and runs without it, and `available()` says why
 * not when it is missing. Only prebuilt binaries are used (build: 'never'): nothing is
 * downloaded or compiled at run time.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export type LlamaGpuChoice = 'auto' | 'cpu' | 'cuda' | 'vulkan' | 'metal';

export interface PeerTimings {
  /** Prompt tokens / time to the first generated token. */
  prefillTokensPerS: number;
  /** (generated - 1) / (last - first token time). */
  decodeTokensPerS: number;
  tokens: number[];
}

export interface LlamaCppPeer {
  /** 'cpu', 'cuda', 'vulkan', ... as node-llama-cpp reports the backend it loaded. */
  backend: string;
  version: string;
  /** Greedy generation from token ids (no BOS added), timed. */
  generate(prompt: number[], maxTokens: number): Promise<PeerTimings>;
  close(): Promise<void>;
}

/**
 * The slice of node-llama-cpp's API used here, typed locally so the project type-checks
 * where the optional package is absent.
 */
interface LlamaSequence {
  clearHistory(): Promise<void>;
  evaluate(tokens: number[], options: { temperature: number }): AsyncGenerator<number, void, void>;
}
interface NodeLlamaCpp {
  LlamaLogLevel: { error: unknown };
  getLlama(options: Record<string, unknown>): Promise<{
    gpu: string | false;
    buildType?: string;
    loadModel(options: { modelPath: string; gpuLayers: number | 'max' }): Promise<{
      createContext(options: { contextSize: number; batchSize: number; sequences: number }): Promise<{
        getSequence(): LlamaSequence;
        dispose(): Promise<void>;
      }>;
      dispose(): Promise<void>;
    }>;
    dispose(): Promise<void>;
  }>;
}

/** A variable specifier keeps TypeScript from resolving the optional package. */
const PACKAGE = 'node-llama-cpp';

let cached: { mod: NodeLlamaCpp | null; reason: string | null } | null = null;

/** The project's private install (scripts/setup.sh with AUTOGLM_WITH_LLAMA_CPP=1), or a regular one. */
export const LLAMA_CPP_PREFIX = '.cache/llama-cpp';

async function importLlamaCpp(): Promise<unknown> {
  try {
    return await import(PACKAGE);
  } catch (first) {
    // a private prefix keeps its ~700 MB of optional GPU builds out of node_modules
    for (let dir = dirname(fileURLToPath(import.meta.url)), i = 0; i < 6; i++, dir = dirname(dir)) {
      const prefix = join(dir, LLAMA_CPP_PREFIX);
      if (existsSync(join(prefix, 'node_modules', PACKAGE))) {
        return import(pathToFileURL(createRequire(join(prefix, 'package.json')).resolve(PACKAGE)).href);
      }
    }
    throw first;
  }
}

/** The module, or null with the reason it cannot be used. */
export async function loadNodeLlamaCpp(): Promise<{ mod: NodeLlamaCpp | null; reason: string | null }> {
  if (cached) return cached;
  try {
    cached = { mod: (await importLlamaCpp()) as NodeLlamaCpp, reason: null };
  } catch (e) {
    cached = {
      mod: null,
      reason: `node-llama-cpp is not installed (optional: \`AUTOGLM_WITH_LLAMA_CPP=1 bash scripts/setup.sh\` or \`npm install node-llama-cpp\` adds it): ${(e as Error).message.split('\n')[0]}`,
    };
  }
  return cached;
}

export async function openLlamaCppPeer(
  ggufPath: string,
  options: { gpu: LlamaGpuChoice; contextTokens: number; threads?: number },
): Promise<LlamaCppPeer> {
  const { mod, reason } = await loadNodeLlamaCpp();
  if (!mod) throw new Error(reason ?? 'node-llama-cpp unavailable');
  const llama = await mod.getLlama({
    gpu: options.gpu === 'cpu' ? false : options.gpu,
    build: 'never',
    logLevel: mod.LlamaLogLevel.error,
    ...(options.threads ? { maxThreads: options.threads } : {}),
  });
  const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: options.gpu === 'cpu' ? 0 : 'max' });
  const context = await model.createContext({
    contextSize: options.contextTokens,
    batchSize: Math.min(options.contextTokens, 2048),
    sequences: 1,
  });
  const sequence = context.getSequence();
  const backend = llama.gpu === false ? 'cpu' : String(llama.gpu);
  return {
    backend,
    version: llama.buildType ?? 'prebuilt',
    async generate(prompt, maxTokens) {
      await sequence.clearHistory();
      const tokens: number[] = [];
      const times: number[] = [];
      const start = performance.now();
      for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
        times.push(performance.now());
        tokens.push(token);
        if (tokens.length >= maxTokens) break;
      }
      return timings(prompt.length, start, times, tokens);
    },
    async close() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

export function timings(promptTokens: number, startMs: number, tokenTimesMs: number[], tokens: number[]): PeerTimings {
  const first = tokenTimesMs[0]! - startMs;
  const last = tokenTimesMs[tokenTimesMs.length - 1]!;
  const decodeMs = last - tokenTimesMs[0]!;
  return {
    prefillTokensPerS: promptTokens / (first / 1000),
    decodeTokensPerS: tokens.length > 1 && decodeMs > 0 ? (tokens.length - 1) / (decodeMs / 1000) : Number.NaN,
    tokens,
  };
}
