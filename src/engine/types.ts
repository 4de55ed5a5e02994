/**
 * The engine's public contract. The server, the gateway and the benchmarks depend on this
 * file only; everything else in src/engine/ is an implementation detail.
 */
import type { KernelProfileOption } from '../kernels/kernel-profile.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string;
  [extra: string]: unknown;
}

export interface SamplingParams {
  /** 0 (default when absent: the model's generation_config, else 1.0) means greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  /** HF-style: divides positive logits / multiplies negative ones of tokens seen in prompt or output. */
  repetitionPenalty?: number;
  /** OpenAI-style, over generated tokens only. */
  frequencyPenalty?: number;
  presencePenalty?: number;
  /** Same seed, same output: randomness is a function of (seed, position). */
  seed?: number;
  /**
   * OpenAI's logit_bias: token id -> bias in [-100, 100], added to the model's logits before
   * penalties, temperature and filters (so logprobs see it too). -100 bans a token in
   * practice, +100 forces it. At most 1024 tokens.
   */
  logitBias?: Readonly<Record<number, number>>;
}

/**
 * OpenAI's response_format, and vLLM's structured outputs. json_object: one JSON object;
 * json_schema: one JSON value valid under the schema (a subset of JSON Schema:
 * src/engine/constraints/json-schema.ts); regex: text the whole of which the pattern matches
 * (a subset of Python's syntax: src/engine/constraints/regex-syntax.ts); choice: exactly one
 * of the strings. All are enforced token by token (constrained decoding), so the output is
 * whole whenever generation ends by itself; a max_tokens cut or a stop string can still
 * leave it unfinished. `param` names the request parameter the format came from in the
 * invalid_request errors of a format that cannot be enforced (default `response_format`).
 */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object'; param?: string }
  | { type: 'json_schema'; schema: Record<string, unknown> | boolean; param?: string }
  | { type: 'regex'; pattern: string; param?: string }
  | { type: 'choice'; choices: string[]; param?: string }
  | ToolCallsFormat;

/** The call syntaxes a tool-call constraint can write (the server's tool-call parsers read them back). */
export const TOOL_CALL_SYNTAXES = ['hermes', 'llama3_json', 'glm45'] as const;
export type ToolCallSyntax = (typeof TOOL_CALL_SYNTAXES)[number];

/**
 * Not an OpenAI response_format: the server sets it for tool_choice 'required' or a named
 * function, so that the output is nothing but tool calls in the model's own syntax, then
 * EOS (src/engine/constraints/tool-call-grammar.ts). hermes: `<tool_call>\n{"name": ...,
 * "arguments": ...}\n</tool_call>` blocks separated by '\n'; llama3_json: `{"name": ...,
 * "parameters": ...}` objects separated by '; '; glm45: `<tool_call>name\n` then
 * `<arg_key>k</arg_key>\n<arg_value>v</arg_value>\n` per argument and `</tool_call>`, calls
 * separated by '\n'. Each call's arguments follow its tool's parameters schema (JSON: any
 * object when it has none; glm45: no arguments then); a schema that cannot be enforced is
 * an invalid_request naming `tools.N.function.parameters`, N its place in `tools`.
 */
export interface ToolCallsFormat {
  type: 'tool_calls';
  syntax: ToolCallSyntax;
  /** The request's tools, in its order (error messages name them by index). */
  tools: { name: string; parameters?: Record<string, unknown> | boolean }[];
  /** Only this tool may be called (a named tool_choice); absent: any of them. */
  forcedName?: string;
  /** More than one call allowed (OpenAI's parallel_tool_calls). */
  parallel: boolean;
}

/**
 * A thinking model's reasoning tags (`<think>`, `</think>`), for a request whose output has
 * reasoning before the answer: responseFormat then applies to the answer only, the text
 * after the end tag (src/engine/constraints/reasoning-gate.ts); the reasoning is free text.
 */
export interface ReasoningTags {
  start: string;
  end: string;
  /**
   * true: the output begins inside reasoning (the prompt opened it). false: the output may
   * open it with `start` as its very first text; output that does not is the answer.
   */
  startsInside: boolean;
}

export interface GenerateRequest {
  /** Text (no template applied), chat messages (chat template applied), or token ids. */
  prompt: string | ChatMessage[] | number[];
  /**
   * The name of a LoRA adapter loaded with EngineOptions.loraAdapters: the request runs on
   * the base model plus that adapter (batched with requests on other adapters or none).
   * Absent: the base model. An unknown name is a model_not_found error.
   */
  lora?: string;
  maxTokens?: number;
  /**
   * Generate at least this many tokens (vLLM's min_tokens; resumed ones count): until then
   * EOS and stopTokenIds cannot be sampled (banned on the GPU, so logprobs are those of the
   * remaining tokens) and a stop string ends the output only if it ends after them (one that
   * begins before may, as in vLLM). At most maxTokens; not with a
   * responseFormat, whose grammar decides where the output ends.
   */
  minTokens?: number;
  /**
   * vLLM's priority: with EngineOptions.schedulingPolicy 'priority', waiting requests are
   * admitted by lowest value first (then arrival), and memory pressure preempts the highest
   * value first. An integer, default 0; other values are refused under 'fcfs'.
   */
  priority?: number;
  sampling?: SamplingParams;
  /** Stop strings: generation ends before the first occurrence; the stop text is not returned (see includeStopStrInOutput). */
  stop?: string[];
  /** vLLM's include_stop_str_in_output: the stop string that ended the output is returned at its end. */
  includeStopStrInOutput?: boolean;
  stopTokenIds?: number[];
  /** Keep going after EOS (benchmarks). */
  ignoreEos?: boolean;
  /** Return the chosen token's logprob, and this many top alternatives (0..20). */
  logprobs?: boolean;
  topLogprobs?: number;
  /**
   * vLLM's prompt_logprobs (and what OpenAI's echo with logprobs returns): the logprob of
   * every prompt token given the tokens before it, from the raw model distribution, with
   * this many top alternatives (0..20); the first token has none (null). They come on the
   * first event. Every prompt row is then computed (no prefix-cache reuse). Not with
   * resumeTokenIds.
   */
  promptLogprobs?: number;
  /**
   * Tokens already generated for this request elsewhere (failover resume): they are
   * appended to the prompt, count towards maxTokens and penalties, and are not emitted
   * again. Generation continues exactly as an uninterrupted run would.
   */
  resumeTokenIds?: number[];
  /** Constrains the output to JSON (default: free text). A format that cannot be enforced is an invalid_request. */
  responseFormat?: ResponseFormat;
  /** With responseFormat: the reasoning that comes before the answer it constrains (ignored without one). */
  formatAfterReasoning?: ReasoningTags;
  /** Options for chat templates (e.g. add_generation_prompt defaults to true, tools). */
  chatTemplateKwargs?: Record<string, unknown>;
  /**
   * Aborting cancels the generation and frees its KV blocks at once: generate()'s stream
   * ends without a final event (at once when the signal is already aborted), and complete()
   * rejects with a request_cancelled error. The engine's listener goes when the request ends.
   */
  signal?: AbortSignal;
  /** Opaque id for logs and stats. */
  requestId?: string;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

/** A token as logprobs report it. */
export interface LogprobToken {
  /** Its text, or OpenAI's `bytes:\xf0\x9f` form where its bytes are only part of a UTF-8 character. */
  token: string;
  /** Its own bytes (part of a character for some tokens: join a completion's to get its text). */
  bytes: number[];
}

export interface TopLogprob extends LogprobToken {
  tokenId: number;
  logprob: number;
}

/** One prompt token's logprob given the tokens before it (GenerateRequest.promptLogprobs). */
export interface PromptTokenLogprob extends TopLogprob {
  /** Its rank in the model's distribution at its position: 1 + the tokens more likely than it. */
  rank: number;
  /** The most likely tokens at its position (as many as promptLogprobs asked for). */
  topLogprobs: TopLogprob[];
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens whose KV came from the prefix cache. */
  cachedPromptTokens: number;
}

/**
 * Timings of one finished request, in ms of the engine's own clock (performance.now()),
 * counted from the engine's admission of the request (its generate() call).
 */
export interface RequestMetrics {
  /** Admission to the first generated token: queueing and prefill. */
  timeToFirstTokenMs: number;
  /** Mean time per output token after the first: (last - first token) / (tokens - 1); 0 for one token. */
  timePerOutputTokenMs: number;
  /** Admission to the last token. */
  e2eMs: number;
  /** Tokens this engine generated for the request (resumed ones not included). */
  generatedTokens: number;
  /** Times the request was preempted for lack of KV blocks (and recomputed). */
  preemptions: number;
  /** Answered from the response cache: the timings are those of the replay. */
  responseCacheHit: boolean;
}

/** One event per generated token; the last event carries finishReason, usage and metrics. */
export interface TokenEvent {
  /** Text that became final with this token (may be '' while a UTF-8 character or a possible stop string is pending). */
  text: string;
  tokenId: number;
  logprob?: number;
  /** With logprob: this token's text and bytes as logprobs report them. */
  logprobToken?: LogprobToken;
  topLogprobs?: TopLogprob[];
  /** On the first event, with GenerateRequest.promptLogprobs: one per prompt token, null for the first. */
  promptLogprobs?: (PromptTokenLogprob | null)[];
  /** Absolute index of this token among generated tokens (resumed ones included). */
  index: number;
  finishReason?: FinishReason;
  usage?: Usage;
  /** On the last event of a finished request (absent where an engine does not measure, e.g. test doubles). */
  metrics?: RequestMetrics;
}

export interface EngineStats {
  modelName: string;
  adapterName: string;
  waiting: number;
  running: number;
  /** With LoRA adapters loaded: those of running and of waiting requests, and how many are loaded (vLLM's lora_requests_info). */
  loraRequests?: { running: string[]; waiting: string[]; maxLoras: number };
  kvBlocksTotal: number;
  kvBlocksUsed: number;
  /** kvBlocksTotal - kvBlocksUsed: blocks no request holds (some still keep a reusable cached prefix). */
  kvBlocksFree: number;
  kvBlockSize: number;
  prefixCacheQueries: number;
  prefixCacheHits: number;
  responseCacheHits: number;
  responseCacheMisses: number;
  preemptions: number;
  promptTokens: number;
  generationTokens: number;
  /** Requests finished (any reason) and the sums behind mean latencies, in the engine's own clock. */
  finishedRequests: number;
  /** Sum over finished requests of admission -> first token, ms. */
  timeToFirstTokenMsSum: number;
  /** Sum over finished requests of their mean time per output token after the first, ms. */
  timePerOutputTokenMsSum: number;
  /**
   * Forward steps and their wall time (recording, GPU work and read-back), split by kind:
   * prefill steps compute more than one token of some sequence (prompt chunks, with any
   * decode rows that ride along); decode steps compute one token per sequence (and its drafts,
   * with speculative decoding). Where the
   * engine's time goes under load, and its busy fraction (step seconds per second).
   */
  prefillSteps: number;
  prefillStepMsSum: number;
  /** Tokens (rows) computed by prefill steps, decode rows in them included. */
  prefillStepRows: number;
  decodeSteps: number;
  decodeStepMsSum: number;
  decodeStepRows: number;
  /** Requests admitted with a grammar (response_format json_*, a required tool call). */
  constrainedRequests: number;
  /** Token masks looked up by grammar state, and how many were cached (the rest were computed on the step's path). */
  tokenMaskQueries: number;
  tokenMaskCacheHits: number;
  /**
   * Speculative decoding (EngineOptions.speculativeTokens): decode rows that carried drafts,
   * the draft tokens, and those kept. Accepted / draft tokens is the acceptance rate; each
   * kept draft is a token that cost no step of its own.
   */
  specDecodeDrafts: number;
  specDecodeDraftTokens: number;
  specDecodeAcceptedTokens: number;
}

export interface CompletionResult {
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  usage: Usage;
  logprobs?: (LogprobToken & { tokenId: number; logprob: number; topLogprobs?: TopLogprob[] })[];
  /** With GenerateRequest.promptLogprobs: one per prompt token, null for the first. */
  promptLogprobs?: (PromptTokenLogprob | null)[];
  /** The last event's metrics. */
  metrics?: RequestMetrics;
}

/** A LoRA adapter to load: its name (what requests ask for) and its PEFT folder. */
export interface LoraAdapterOption {
  name: string;
  /** A folder holding adapter_config.json and adapter_model.safetensors (Hugging Face PEFT). */
  path: string;
}

export interface EngineOptions {
  /** Weights and KV cache in f32 even where shader-f16 exists. */
  forceF32?: boolean;
  /**
   * LoRA adapters kept on the device beside the base weights, each in a slot of its own
   * (vLLM's --lora-modules): GenerateRequest.lora picks one per request, and a step batches
   * requests on different adapters together. Only plain LoRA on the attention and MLP
   * projections (peft-adapter.ts says what is refused).
   */
  loraAdapters?: LoraAdapterOption[];
  /**
   * LoRA slots kept on the device (vLLM's --max-loras), default loraAdapters.length: slots
   * beyond those are for Engine.loadLora at run time, and then every projection of every
   * layer gets adapter kernels, since a later adapter may change any of them.
   */
  maxLoras?: number;
  /** Rank of every LoRA slot (vLLM's --max-lora-rank): default the largest given, else 16. */
  maxLoraRank?: number;
  /**
   * How matmul weights (attention and MLP projections, the LM head) are stored on the
   * device. Default: f16 where the adapter has shader-f16 (and forceF32 is off), else f32.
   * 'int8': quantized at load (symmetric, one scale per output row and group of 64 input
   * features), half the bytes of f16 to hold and to read per decode step; the embedding
   * table, norms, KV cache and activations keep their dtypes. 'f16' with forceF32
   * contradicts it and is refused.
   */
  weightDType?: WeightDTypeOption;
  /** GPU selection, passed to the device layer. */
  backend?: string;
  adapter?: string;
  /** Kernel variants and tilings: 'cpu', 'gpu' or 'auto' (by the adapter; see GpuOptions.kernelProfile). */
  kernelProfile?: KernelProfileOption;
  /**
   * KV cache budget in bytes. Default: DEFAULT_KV_MEMORY_FRACTION (0.5, memory-plan.ts) of
   * what the device allows after the weights (WebGPU's maxBufferSize less the bytes the
   * uploaded model occupies), at least one sequence at full context, at most every batch
   * slot at full context, and never more blocks than one binding per layer can hold;
   * halved (down to one full-context sequence) while the device refuses it as out of memory.
   */
  kvCacheBytes?: number;
  /** Tokens per KV block (default 16). */
  kvBlockSize?: number;
  /** Largest number of sequences decoded together in one step. */
  maxBatchSequences?: number;
  /** Token budget of one engine step (decode rows + prefill chunk rows). */
  maxBatchTokens?: number;
  /**
   * Prompt rows scored per step for prompt logprobs (and echo with logprobs), each a row of
   * f32 logits: default as many as 32 MiB of logits hold (55 at a 151,936-token vocabulary,
   * 262 at 32,000), at most 512; a longer prompt is scored over several steps. 0 refuses
   * prompt logprobs.
   */
  promptLogprobsRows?: number;
  /**
   * Speculative decoding by prompt lookup (vLLM's `method: "ngram"`): up to this many tokens
   * guessed after each decode row from where the sequence's last tokens occurred earlier in
   * its prompt or output, computed in the same step and kept while they equal what the
   * sampler draws there, so the output is exactly plain decoding's. Default 0 (off). Each
   * draft row is sampled as plain decoding would sample there: masked by a response_format's
   * grammar as it stands after the drafts before it, with min_tokens' bans ending at the row
   * where it is reached, and penalties counting the drafts before it.
   */
  speculativeTokens?: number;
  /**
   * Which waiting request runs next: 'fcfs' (default, arrival order) or 'priority' (each
   * request's priority, lowest first, then arrival; memory pressure preempts the running
   * request with the highest priority value, not the newest).
   */
  schedulingPolicy?: SchedulingPolicy;
  /** Shortest and longest suffix (in tokens) that prompt lookup matches (defaults 2 and 4). */
  promptLookupMin?: number;
  promptLookupMax?: number;
  /** Response cache bounds; 0 entries disables it. */
  responseCacheEntries?: number;
  responseCacheBytes?: number;
  responseCacheTtlMs?: number;
  /** Override the context length from config.json (never above it). */
  maxContextTokens?: number;
  /**
   * Run each RMSNorm of the residual stream inside the matmul it feeds, and add the o and
   * down projections into the residual stream in place (default true; in models with
   * post-norms, GLM-4 and Gemma 2/3, each post-norm adds its result into the residual stream
   * instead). false: a dispatch per norm, as before: for comparisons. The results agree to
   * f32 rounding.
   */
  foldNorms?: boolean;
  /** The model name reported to clients (default: the folder's name). */
  servedModelName?: string;
}

/** EngineOptions.schedulingPolicy's values (`autoglm serve --scheduling-policy`). */
export const SCHEDULING_POLICIES = ['fcfs', 'priority'] as const;
export type SchedulingPolicy = (typeof SCHEDULING_POLICIES)[number];

/** EngineOptions.weightDType's values (`autoglm serve --weight-dtype`). */
export const WEIGHT_DTYPE_OPTIONS = ['f16', 'f32', 'int8'] as const;
export type WeightDTypeOption = (typeof WEIGHT_DTYPE_OPTIONS)[number];

/** What the server and benchmarks use. `Engine` (src/engine/engine.ts) implements it. */
export interface InferenceEngine {
  readonly modelName: string;
  /** LoRA adapters a request may name (GenerateRequest.lora; at the server, as its `model`). */
  readonly loraNames?: readonly string[];
  /** Loads a LoRA adapter at run time (Engine.loadLora); absent where the engine cannot. */
  loadLora?(name: string, path: string): Promise<void>;
  /** Unloads one (Engine.unloadLora). */
  unloadLora?(name: string): void;
  /** Largest prompt + completion length in tokens. */
  readonly contextLength: number;
  generate(request: GenerateRequest): AsyncIterable<TokenEvent>;
  /** Collects a whole generation. */
  complete(request: GenerateRequest): Promise<CompletionResult>;
  /** Token ids of a text (no template) or of chat messages (template applied). */
  tokenize(
    input: string | ChatMessage[],
    options?: { addSpecialTokens?: boolean; chatTemplateKwargs?: Record<string, unknown> },
  ): Promise<number[]>;
  /**
   * The text of token ids. `param` is how an id outside the vocabulary is named in the
   * invalid_request error (default `token_ids`; the HTTP route's field is `tokens`).
   */
  detokenize(tokenIds: number[], options?: { param?: string }): Promise<string>;
  /**
   * The chat template's source, null when the model has none: tool calling reads which
   * variables it uses and which call format it teaches. Optional: an engine without one
   * (a test double) has tools refused.
   */
  chatTemplateSource?(): string | null;
  /**
   * A token as logprobs report it (its own bytes, a partial UTF-8 character as `bytes:\x..`):
   * what events carry in logprobToken, for a token no event names (an echoed prompt's first).
   * Optional: without it the server decodes the token's text.
   */
  logprobToken?(tokenId: number): LogprobToken;
  /**
   * Compiles a response format without holding the event loop (Engine's does it in
   * slices), before generate() needs it; never throws. Absent: generate() compiles it inline.
   */
  precompileResponseFormat?(format: ResponseFormat | undefined): Promise<void>;
  /**
   * The text generate() streamed for these generated tokens (special tokens left out, as its
   * detokenizer writes them): what a resumed stream had already sent. Optional; without it
   * the server falls back to detokenize().
   */
  generatedText?(tokenIds: readonly number[]): string;
  stats(): EngineStats;
  /**
   * Why this engine can no longer serve anything (its GPU device was lost: a driver reset,
   * a GPU that fell off the bus), or null while it can. The server then answers /ready and
   * /health with 503 so that a gateway stops routing to it and an orchestrator replaces it.
   * Optional: an engine without a device has no such fault.
   */
  fault?(): string | null;
  /**
   * Requests still running or queued fail with a server_draining error; later calls get the
   * same promise, resolved once the GPU is freed.
   */
  close(): Promise<void>;
}
