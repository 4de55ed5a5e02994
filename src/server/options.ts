import type { FastifyServerOptions } from 'fastify';
import type { InferenceEngine } from '../engine/types.js';
import type { CorsOptions } from './cors.js';
import type { ReasoningParserOption } from './reasoning/types.js';
import type { ToolCallParserOption } from './tool-calls/types.js';
import { withoutUndefined } from '../without-undefined.js';

/** Limits that protect the server from oversized or abusive requests. */
export interface ServerLimits {
  /** Largest request body in bytes (413 above it). */
  maxBodyBytes: number;
  /** Largest prompt in tokens (default: the model's context length). */
  maxPromptTokens?: number;
  /** Largest max_tokens a client may ask for (default: the model's context length). */
  maxCompletionTokens?: number;
  /** Requests admitted (streaming or not) before new ones get 429 queue_full. */
  maxPendingRequests: number;
  /** Largest `n` (choices per prompt) and prompts per /v1/completions request. */
  maxChoices: number;
  /**
   * A streaming client that takes nothing for this long (its socket buffers full) is cut off,
   * which cancels its request: one that never reads would hold its slot, and a drain, for ever.
   */
  streamStallTimeoutMs: number;
}

export interface RateLimitOptions {
  /** Sustained requests per second per API key (or per client address when auth is off). */
  requestsPerSecond: number;
  /** Bucket size: requests a key may send at once after being idle. */
  burst: number;
}

export interface AuthOptions {
  /** Accepted bearer keys. Empty with `disabled: false` means every /v1 request gets 401. */
  apiKeys: string[];
  /** Auth is off only when this is explicitly true. */
  disabled?: boolean;
}

export interface TokenizerPoolOptions {
  /** The model folder the worker loads its tokenizer from. */
  modelDir: string;
  /** Worker threads (0 disables the pool: everything is tokenized on the event loop). */
  threads: number;
  /** Inputs longer than this many characters go to the pool; shorter ones stay inline. */
  minChars: number;
}

export interface ServerOptions {
  /** The engine, or a promise of it: /ready answers 503 until it resolves. */
  engine: InferenceEngine | Promise<InferenceEngine>;
  /** Name clients pass as `model` (default: engine.modelName). Any of `modelAliases` is accepted too. */
  servedModelName?: string;
  modelAliases?: string[];
  auth: AuthOptions;
  /** When set, every /v1 and tokenizer request must carry `x-autoglm-cluster-secret` equal to it. */
  clusterSecret?: string;
  rateLimit?: RateLimitOptions;
  limits?: Partial<ServerLimits>;
  tokenizerPool?: TokenizerPoolOptions;
  /**
   * How tool calls are read from the output of requests that send tools (default 'auto':
   * the format the model's chat template teaches, when it is one the server knows).
   */
  toolCallParser?: ToolCallParserOption;
  /**
   * How reasoning (`<think> … </think>`) is split from chat output into reasoning_content
   * (default 'auto': when the model's chat template writes `<think>`).
   */
  reasoningParser?: ReasoningParserOption;
  /** pino logger options for fastify (false: silent). */
  logger?: FastifyServerOptions['logger'];
  /** HTTPS when both are given (PEM contents). */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Browser origins allowed to call the API (CORS); none when absent. */
  cors?: CorsOptions;
  /**
   * Serve vLLM's POST /v1/load_lora_adapter and /v1/unload_lora_adapter. Off by default: a
   * client with an API key could then have the server read any adapter folder on its disk.
   */
  allowRuntimeLoraUpdates?: boolean;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxBodyBytes: 4 * 1024 * 1024,
  maxPendingRequests: 256,
  maxChoices: 16,
  // nginx's send_timeout, for the same job
  streamStallTimeoutMs: 60_000,
};

export function resolveLimits(partial: Partial<ServerLimits> | undefined): ServerLimits {
  return { ...DEFAULT_LIMITS, ...withoutUndefined(partial ?? {}) };
}
