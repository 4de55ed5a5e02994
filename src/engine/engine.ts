/**
 * The engine: one model on one GPU, serving many requests at once.
 *
 * `generate()` tokenizes and validates a request, then hands it to the scheduler; one step
 * loop runs while any request is unfinished: schedule -> one GPU step for the whole batch ->
 * sampled token ids -> detokenize, stop checks, events. The scheduler decides batching,
 * chunked prefill, prefix reuse and preemption; the runner owns every GPU buffer.
 */
import { randomInt } from 'node:crypto';
import { AutoGlmError, isAutoGlmError } from '../errors.js';
import { BANNED_TOKEN_BIAS, type RowLogitBias } from '../kernels/logit-bias.js';
import { defaultMatmulTuning } from '../kernels/matmul.js';
import { KernelRuntime } from '../kernels/runtime.js';
import { ResponseFormatConstraints, type OutputConstraint } from './constraints/index.js';
import { EventChannel } from './event-channel.js';
import { LogprobTokens } from './logprob-tokens.js';
import { loadModelFolder, type LoadedModelFolder } from './model-folder.js';
import {
  isDeterministic,
  resolveSampling,
  snapshotRequest,
  usesPenalties,
  validateRequestShape,
  validateResponseFormatShape,
  validateTokenIds,
  validateTokenizeInput,
  type ResolvedSampling,
} from './request-validation.js';
import { validateEngineEnvironment, validateEngineOptions } from './engine-options.js';
import { ResponseCache } from './response-cache.js';
import { LORA_GEMM_MIN_ROWS, ModelRunner, type RunnerSequence, type StepResult } from './runner/model-runner.js';
import type { ScheduledSequence } from './scheduler-output.js';
import { allocateKvShrinking, checkKvCacheBytes, planMemory } from './memory-plan.js';
import { uploadModel } from './runner/upload-model.js';
import { DEFAULT_MAX_LORA_RANK, checkLoraName, loadLoraAdapters, refuseBaseModelName } from './lora/load-adapters.js';
import { LoraRegistry, type LoraHandle } from './lora/lora-registry.js';
import { uploadLoras, writeLoraSlot } from './lora/lora-weights.js';
import { emptyLoraAdapter, loadLoraAdapter, type LoraAdapter } from './lora/peft-adapter.js';
import { Scheduler } from './scheduler.js';
import { SequenceOutput } from './sequence-output.js';
import { warmUpWaves } from './warm-up.js';
import type {
  ChatMessage,
  CompletionResult,
  EngineOptions,
  EngineStats,
  GenerateRequest,
  InferenceEngine,
  LogprobToken,
  PromptTokenLogprob,
  ReasoningTags,
  ResponseFormat,
  RequestMetrics,
  TokenEvent,
} from './types.js';
import { basename } from 'node:path';

/** The counters in EngineStats that only grow (the rest are gauges). */
const CUMULATIVE_STATS = [
  'prefixCacheQueries',
  'prefixCacheHits',
  'responseCacheHits',
  'responseCacheMisses',
  'preemptions',
  'promptTokens',
  'generationTokens',
  'finishedRequests',
  'timeToFirstTokenMsSum',
  'timePerOutputTokenMsSum',
  'prefillSteps',
  'prefillStepMsSum',
  'prefillStepRows',
  'decodeSteps',
  'decodeStepMsSum',
  'decodeStepRows',
  'constrainedRequests',
  'tokenMaskQueries',
  'tokenMaskCacheHits',
  'specDecodeDrafts',
  'specDecodeDraftTokens',
  'specDecodeAcceptedTokens',
] as const satisfies readonly (keyof EngineStats)[];
type CumulativeStat = (typeof CUMULATIVE_STATS)[number];

/** The stand-in adapter's name while the warm-up runs (not a name checkLoraName lets a client load). */
const WARM_UP_LORA = '<warm-up>';

interface ActiveRequest {
  id: string;
  promptTokenIds: number[];
  /** GenerateRequest.lora's slot in the runner's adapters; undefined: the base model. */
  loraSlot: number | undefined;
  sampling: ResolvedSampling;
  wantsPenalties: boolean;
  countsSlot: number;
  /** Counts slot must be rebuilt from host-side tokens before the next sampled step. */
  countsStale: boolean;
  admittedAtMs: number;
  firstTokenAtMs: number | undefined;
  lastTokenAtMs: number | undefined;
  preemptions: number;
  /** Prompt tokens served from the prefix cache, known once the scheduler admits it. */
  cachedPromptTokens: number | undefined;
  output: SequenceOutput;
  /** With min_tokens: the request's logit biases plus a ban on every token that would end it, used until min_tokens. */
  minTokensBias: RowLogitBias | undefined;
  channel: EventChannel<TokenEvent>;
  cacheKey: string | null;
  events: TokenEvent[];
  generatedTokenIds: number[];
  /** Where the output stands in its response_format's grammar (or its reasoning before it); null for free text. */
  constraint: OutputConstraint | null;
  /** With promptLogprobs: one entry per prompt token (null for the first), filled as its rows are scored, sent on the first event. */
  promptLogprobs: (PromptTokenLogprob | null)[] | undefined;
  request: GenerateRequest;
  /** Removes the abort listener from the request's signal (which may outlive the request). */
  detachSignal: () => void;
}

let nextRequestNumber = 0;

/**
 * The mask of each draft row: what the grammar allows after the drafts before it, read from a
 * fork of the request's constraint walked along them. From a draft the grammar refuses on,
 * the row before it cannot have drawn it, so the rows after are never kept: they take the
 * last mask known, which keeps their draws valid and costs nothing to look up.
 */
function draftMasks(constraint: OutputConstraint, first: Uint32Array | undefined, drafts: readonly number[]): (Uint32Array | undefined)[] {
  const probe = constraint.fork();
  const out: (Uint32Array | undefined)[] = [];
  let mask = first;
  let walking = true;
  for (const token of drafts) {
    if (walking && (mask === undefined || (mask[token >>> 5]! & (1 << (token & 31))) !== 0)) {
      try {
        probe.accept(token);
        mask = probe.mask() ?? undefined;
      } catch {
        walking = false;
      }
    } else walking = false;
    out.push(mask);
  }
  return out;
}

/**
 * The biases for a request's token `ahead` tokens after its next one (0: the next): its own,
 * or with min_tokens not reached by then, those plus the bans.
 */
function logitBiasOf(a: ActiveRequest, ahead = 0): RowLogitBias | undefined {
  const banned = a.minTokensBias !== undefined && a.output.numGenerated + ahead < (a.request.minTokens ?? 0);
  return banned ? a.minTokensBias : a.sampling.logitBias;
}

/** `bias` with each of `banned` set to BANNED_TOKEN_BIAS (over any bias of its own), sorted by token; undefined for no tokens. */
function withBannedTokens(bias: RowLogitBias | undefined, banned: readonly number[]): RowLogitBias | undefined {
  if (banned.length === 0) return bias;
  const byToken = new Map(bias ?? []);
  for (const token of banned) byToken.set(token, BANNED_TOKEN_BIAS);
  return [...byToken].sort((a, b) => a[0] - b[0]);
}

export class Engine implements InferenceEngine {
  readonly modelName: string;
  private readonly loraRegistry: LoraRegistry;
  readonly contextLength: number;
  private readonly active = new Map<string, ActiveRequest>();
  private readonly freeCountSlots: number[];
  private loopRunning = false;
  private closed = false;
  private closing: Promise<void> | null = null;
  private promptTokens = 0;
  private generationTokens = 0;
  private finishedRequests = 0;
  private constrainedRequests = 0;
  private ttftMsSum = 0;
  private tpotMsSum = 0;
  private readonly steps = { prefill: { count: 0, ms: 0, rows: 0 }, decode: { count: 0, ms: 0, rows: 0 } };
  private readonly responseCache: ResponseCache<TokenEvent[]>;
  private readonly constraints: ResponseFormatConstraints;
  private readonly logprobTokens: LogprobTokens;
  /** Counter values that stats() subtracts: what warmUp() ran, so counters start from zero after it. */
  private statsBaseline: Pick<EngineStats, CumulativeStat> | null = null;

  private constructor(
    readonly folder: LoadedModelFolder,
    readonly rt: KernelRuntime,
    private readonly runner: ModelRunner,
    private readonly scheduler: Scheduler,
    options: EngineOptions,
  ) {
    this.modelName = options.servedModelName ?? basename(folder.dir);
    // the adapters given were written to slots 0, 1, ... by uploadLoras
    this.loraRegistry = new LoraRegistry(runner.model.loras?.capacity ?? 0);
    for (const { name } of options.loraAdapters ?? []) this.loraRegistry.commit(this.loraRegistry.reserve(name));
    this.contextLength = Math.min(folder.spec.contextLength, options.maxContextTokens ?? Infinity);
    this.freeCountSlots = Array.from({ length: runner.counts.slots }, (_, i) => i);
    this.constraints = new ResponseFormatConstraints({
      vocabulary: folder.tokenizer,
      vocabSize: folder.spec.vocabSize,
      eosTokenIds: folder.eosTokenIds,
    });
    this.logprobTokens = new LogprobTokens(folder.tokenizer, () => this.constraints.tokenBytes());
    this.responseCache = new ResponseCache({
      maxEntries: options.responseCacheEntries ?? 1024,
      maxBytes: options.responseCacheBytes ?? 64 * 1024 * 1024,
      ttlMs: options.responseCacheTtlMs ?? 10 * 60 * 1000,
    });
  }

  /** Loads a Hugging Face model folder onto the GPU. */
  static async load(dir: string, options: EngineOptions = {}): Promise<Engine> {
    // bad options fail before the weights are read, not after the model is on the GPU
    validateEngineOptions(options);
    validateEngineEnvironment();
    const folder = await loadModelFolder(dir);
    // adapters are read and checked against the base model before the GPU is touched
    const adapters = await loadLoraAdapters(
      options.loraAdapters ?? [],
      folder.spec,
      options.servedModelName ?? basename(dir),
      options.maxLoraRank,
    ).catch(async (e: unknown) => {
      await folder.weights.close();
      throw e;
    });
    // the weights' file handles were left to the garbage collector when no GPU was found
    const rt = await KernelRuntime.create({
      forceF32: options.forceF32,
      backend: options.backend,
      adapter: options.adapter,
      kernelProfile: options.kernelProfile,
    }).catch(async (e: unknown) => {
      await folder.weights.close();
      throw e;
    });
    try {
      // the KV dtype is the device's: an explicit budget too small for one full-context
      // sequence is refused now, not after the upload
      checkKvCacheBytes(folder.spec, options, rt.preferredDType);
    } catch (e) {
      rt.destroy();
      await folder.weights.close();
      throw e;
    }
    try {
      const model = await uploadModel(rt, folder, { weightDType: options.weightDType ?? rt.preferredDType }).finally(() =>
        folder.weights.close(),
      );
      const loraSlots = options.maxLoras ?? adapters.length;
      if (loraSlots > 0) {
        const rank = options.maxLoraRank ?? (adapters.length > 0 ? Math.max(...adapters.map((a) => a.rank)) : DEFAULT_MAX_LORA_RANK);
        // slots beyond the adapters given are for adapters loaded later, which may change any projection
        model.loras = uploadLoras(rt, folder.spec, adapters, { capacity: loraSlots, rank, allTargets: loraSlots > adapters.length });
      }
      // the adapters are resident too: the KV budget's default leaves room for them
      const plan = planMemory(rt, folder.spec, { residentBytes: model.residentBytes + (model.loras?.bytes ?? 0) }, options);
      const { value: runner, numBlocks } = await allocateKvShrinking(plan, async (blocks) => {
        const made = new ModelRunner(rt, model, { ...plan.runner, numBlocks: blocks });
        // allocation failures (out of memory) surface at the next sync
        await rt.sync().catch((e: unknown) => {
          made.destroy();
          throw e;
        });
        return made;
      });
      const scheduler = new Scheduler({
        numBlocks,
        blockSize: plan.runner.blockSize,
        maxBatchTokens: plan.runner.maxRows,
        maxBatchSequences: plan.maxBatchSequences,
        maxScoreRows: plan.runner.maxScoreRows ?? 0,
        ...(plan.speculation ? { speculation: plan.speculation } : {}),
        policy: options.schedulingPolicy ?? 'fcfs',
        enablePrefixCaching: true,
        hashExtraKeys: [dir],
      });
      await rt.sync();
      return new Engine(folder, rt, runner, scheduler, options);
    } catch (e) {
      rt.destroy();
      throw e;
    }
  }

  /** The LoRA adapters requests may name (GenerateRequest.lora), in slot order. */
  get loraNames(): readonly string[] {
    return this.loraRegistry.names;
  }

  private loraOf(name: string | undefined): LoraHandle | undefined {
    if (name === undefined) return undefined;
    const handle = typeof name === 'string' ? this.loraRegistry.find(name) : null;
    if (handle === null) {
      const known = this.loraNames.length > 0 ? `loaded: ${this.loraNames.join(', ')}` : 'none is loaded';
      throw new AutoGlmError('model_not_found', `The LoRA adapter ${JSON.stringify(name)} does not exist (${known}).`, { param: 'model' });
    }
    return handle;
  }

  /**
   * Loads a PEFT LoRA adapter into a free slot while the engine serves (vLLM's
   * /v1/load_lora_adapter): needs EngineOptions.maxLoras above the adapters loaded, and an
   * adapter of at most maxLoraRank. Requests may name it once this resolves.
   */
  async loadLora(name: string, path: string): Promise<void> {
    if (!this.runner.model.loras)
      throw new AutoGlmError('invalid_request', 'This engine keeps no LoRA slots: load it with maxLoras (--max-loras) above 0.', {
        param: 'lora_name',
      });
    checkLoraName(name, 'lora_name');
    if (typeof path !== 'string' || path === '')
      throw new AutoGlmError('invalid_request', 'lora_path must be a folder path', { param: 'lora_path' });
    refuseBaseModelName(name, this.modelName, 'lora_name');
    await this.placeLora(name, () =>
      loadLoraAdapter(name, path, this.folder.spec).catch((e: unknown) => {
        // a path the caller gave: their mistake, not the server's
        throw isAutoGlmError(e) ? new AutoGlmError('invalid_request', e.message, { param: 'lora_path', cause: e }) : e;
      }),
    );
  }

  /**
   * Claims a free slot for `name` before the adapter is read (two loads at once cannot take
   * the same slot), writes it there and makes the name usable; on any failure the slot is
   * free again. The slot is free, so no step in flight reads it, and later steps see the
   * writes (queue order).
   */
  private async placeLora(name: string, read: () => LoraAdapter | Promise<LoraAdapter>): Promise<void> {
    const loras = this.runner.model.loras!;
    const slot = this.loraRegistry.reserve(name);
    try {
      writeLoraSlot(this.rt, this.folder.spec, loras, slot, await read());
      this.loraRegistry.commit(slot);
    } catch (e) {
      this.loraRegistry.abort(slot);
      throw e;
    }
  }

  /**
   * Unloads an adapter (vLLM's /v1/unload_lora_adapter): new requests naming it get
   * model_not_found at once; those already admitted finish on it, and its slot is free for
   * another adapter after the last of them.
   */
  unloadLora(name: string): void {
    if (!this.loraRegistry.retire(name))
      throw new AutoGlmError('model_not_found', `The LoRA adapter ${JSON.stringify(name)} is not loaded.`, { param: 'lora_name' });
  }

  /** Weight bytes one decode step reads (matmul weights, norms): the bandwidth bound's numerator. */
  get weightBytes(): number {
    return this.runner.model.weightBytes;
  }

  get adapterName(): string {
    return this.rt.adapterName;
  }

  async tokenize(
    input: string | ChatMessage[],
    options: { addSpecialTokens?: boolean; chatTemplateKwargs?: Record<string, unknown> } = {},
  ): Promise<number[]> {
    validateTokenizeInput(input, options);
    const tok = this.folder.tokenizer;
    if (typeof input === 'string') return tok.encode(input, { addSpecialTokens: options.addSpecialTokens ?? true });
    return tok.applyChatTemplate(input, { addGenerationPrompt: true, ...options.chatTemplateKwargs });
  }

  /**
   * Compiles a response format (a regex, choices, a JSON Schema, tool calls) ahead of
   * generate(), giving the event loop back every few ms (an ambiguous pattern takes up to a
   * second to be refused, a schema near the grammar's node limit up to half a second to
   * compile); generate() then finds it compiled, or refused. Never throws: the refusal comes
   * from generate().
   */
  async precompileResponseFormat(format: ResponseFormat | undefined): Promise<void> {
    try {
      validateResponseFormatShape(format);
    } catch {
      return; // admission refuses it, with the shape's own message
    }
    await this.constraints.precompile(format);
  }

  async detokenize(tokenIds: number[], options: { param?: string } = {}): Promise<string> {
    validateTokenIds(options.param ?? 'token_ids', tokenIds, this.folder.spec.vocabSize);
    return this.folder.tokenizer.decode(tokenIds, { skipSpecialTokens: false });
  }

  logprobToken(tokenId: number): LogprobToken {
    validateTokenIds('token_ids', [tokenId], this.folder.spec.vocabSize);
    return this.logprobTokens.of(tokenId);
  }

  chatTemplateSource(): string | null {
    return this.folder.tokenizer.chatTemplate?.source ?? null;
  }

  generatedText(tokenIds: readonly number[]): string {
    return this.folder.tokenizer.decode(tokenIds, { skipSpecialTokens: true });
  }

  async complete(request: GenerateRequest): Promise<CompletionResult> {
    let text = '';
    const tokenIds: number[] = [];
    const logprobs: NonNullable<CompletionResult['logprobs']> = [];
    let last: TokenEvent | undefined;
    let promptLogprobs: CompletionResult['promptLogprobs'];
    for await (const ev of this.generate(request)) {
      promptLogprobs ??= ev.promptLogprobs;
      text += ev.text;
      tokenIds.push(ev.tokenId);
      if (ev.logprob !== undefined)
        logprobs.push({ tokenId: ev.tokenId, ...this.logprobTokens.of(ev.tokenId), logprob: ev.logprob, topLogprobs: ev.topLogprobs });
      last = ev;
    }
    if (!last?.finishReason || !last.usage) {
      // the stream of an aborted request just ends; its completion has nothing to return
      if (request.signal?.aborted) throw new AutoGlmError('request_cancelled', 'the request was aborted', { cause: request.signal.reason });
      throw new AutoGlmError('internal_error', 'generation ended without a final event');
    }
    return {
      text,
      tokenIds,
      finishReason: last.finishReason,
      usage: last.usage,
      logprobs: request.logprobs ? logprobs : undefined,
      ...(promptLogprobs ? { promptLogprobs } : {}),
      metrics: last.metrics,
    };
  }

  generate(request: GenerateRequest): AsyncIterable<TokenEvent> {
    const channel = new EventChannel<TokenEvent>();
    // errors before admission (bad input, context too long) surface from the iterator
    try {
      this.admit(request, channel);
    } catch (e) {
      channel.fail(e);
    }
    return channel;
  }

  private admit(given: GenerateRequest, channel: EventChannel<TokenEvent>): void {
    const admittedAtMs = performance.now();
    if (this.closed) throw new AutoGlmError('server_draining', 'the engine is closed');
    const fault = this.fault();
    if (fault !== null) throw new AutoGlmError('gpu_device_lost', fault);
    const spec = this.folder.spec;
    const request = snapshotRequest(given);
    validateRequestShape(request, spec.vocabSize);
    // before the response cache, which would otherwise answer what this engine refuses
    this.scheduler.checkPriority(request.priority);
    const lora = this.loraOf(request.lora);
    const promptTokenIds = this.promptTokens_(request);
    if (promptTokenIds.length === 0) throw new AutoGlmError('invalid_request', 'the prompt is empty', { param: 'prompt' });
    const resume = request.resumeTokenIds ?? [];
    const used = promptTokenIds.length + resume.length;
    if (used >= this.contextLength) {
      throw new AutoGlmError(
        'context_length_exceeded',
        `This model's maximum context length is ${this.contextLength} tokens. However, your prompt has ${promptTokenIds.length} tokens` +
          (resume.length ? ` plus ${resume.length} resumed tokens` : '') +
          ', leaving no room to generate.',
        { param: 'messages' },
      );
    }
    const room = this.contextLength - promptTokenIds.length;
    if (request.maxTokens !== undefined && request.maxTokens > room) {
      throw new AutoGlmError(
        'context_length_exceeded',
        `This model's maximum context length is ${this.contextLength} tokens. However, you requested ${promptTokenIds.length + request.maxTokens} tokens ` +
          `(${promptTokenIds.length} in the prompt, ${request.maxTokens} for the completion). Please reduce the prompt or max_tokens.`,
        { param: 'max_tokens' },
      );
    }
    const maxTokens = request.maxTokens ?? room;
    if ((request.minTokens ?? 0) > maxTokens) {
      throw new AutoGlmError(
        'invalid_request',
        `min_tokens (${request.minTokens}) is more than the ${maxTokens} tokens the context leaves after the prompt`,
        { param: 'min_tokens' },
      );
    }
    if (resume.length >= maxTokens)
      throw new AutoGlmError('invalid_request', 'resume_token_ids already reach max_tokens', { param: 'resume_token_ids' });
    const sampling = resolveSampling(request.sampling, this.folder.samplingDefaults, () => randomInt(0, 2 ** 47));
    // a format that cannot be enforced is refused here, before anything is queued
    const format = this.constraints.compile(request.responseFormat);
    const constraint = format && this.constraints.constraintAfter(format, request.formatAfterReasoning);
    if (constraint) {
      replayResumed(constraint, resume);
      // the first mask now: a format no token can start (or continue, once resumed) is refused here, not in a step
      constraint.mask();
    }
    const id = request.requestId ? `${request.requestId}#${nextRequestNumber++}` : `req-${nextRequestNumber++}`;
    // Aborted before it was given: its stream ends at once, as an abort mid-stream ends it.
    // It used to be queued first (counted in promptTokens), and a response-cache hit was
    // replayed in full in spite of the abort.
    const signal = request.signal;
    if (signal?.aborted) {
      channel.close();
      return;
    }

    // deterministic requests may be answered from the response cache
    const formatKey = format ? formatCacheKey(format.key, request.formatAfterReasoning) : undefined;
    const cacheKey =
      this.responseCache.enabled && isDeterministic(sampling)
        ? this.cacheKeyOf(request, promptTokenIds, maxTokens, sampling, formatKey, lora && `${lora.name}#${lora.id}`)
        : null;
    if (cacheKey) {
      const cached = this.responseCache.get(cacheKey);
      if (cached) {
        replayCached(cached, channel, admittedAtMs);
        return;
      }
    }

    const output = new SequenceOutput({
      tokenizer: this.folder.tokenizer,
      eosTokenIds: request.ignoreEos ? [] : this.folder.eosTokenIds,
      stopTokenIds: request.stopTokenIds ?? [],
      stop: request.stop ?? [],
      includeStopString: request.includeStopStrInOutput,
      maxTokens,
      minTokens: request.minTokens ?? 0,
      resumeTokenIds: resume,
    });
    const active: ActiveRequest = {
      id,
      promptTokenIds,
      loraSlot: lora?.slot,
      sampling,
      wantsPenalties: usesPenalties(sampling),
      countsSlot: -1,
      countsStale: true,
      cachedPromptTokens: undefined,
      admittedAtMs,
      firstTokenAtMs: undefined,
      lastTokenAtMs: undefined,
      preemptions: 0,
      output,
      minTokensBias: (request.minTokens ?? 0) > 0 ? withBannedTokens(sampling.logitBias, output.endTokenIds) : undefined,
      channel,
      cacheKey,
      events: [],
      generatedTokenIds: [...resume],
      constraint,
      promptLogprobs: request.promptLogprobs === undefined ? undefined : promptTokenIds.map(() => null),
      request,
      detachSignal: () => {},
    };
    this.scheduler.addRequest({
      requestId: id,
      promptTokenIds,
      maxTokens,
      resumeTokenIds: resume,
      scorePrompt: request.promptLogprobs !== undefined,
      // drafts are kept by comparing samples: each draft row's draw must be the one plain
      // decoding would make there, so its mask comes from a fork of the grammar walked along
      // the drafts, its bias from its own place (min_tokens), and its penalties count the
      // drafts before it (pendingTokens, model-runner.ts)
      speculate: true,
      ...(request.priority !== undefined ? { priority: request.priority } : {}),
      // an adapter's KV differs from the base model's (and from another load's under the
      // same name): its prefix-cache blocks are its own
      ...(lora ? { lora: lora.name, loraId: lora.id } : {}),
    });
    if (lora) this.loraRegistry.acquire(lora);
    this.active.set(id, active);
    if (constraint) this.constrainedRequests++;
    this.promptTokens += promptTokenIds.length;
    channel.onConsumerExit(() => this.cancel(id));
    if (signal) {
      // removed when the request ends: one long-lived signal shared by many requests (an
      // app's shutdown signal) gathered a listener per request, a leak Node warns of at 11
      const onAbort = (): void => this.cancel(id);
      signal.addEventListener('abort', onAbort, { once: true });
      active.detachSignal = () => signal.removeEventListener('abort', onAbort);
    }
    this.kick();
  }

  private promptTokens_(request: GenerateRequest): number[] {
    const p = request.prompt;
    if (typeof p === 'string') return this.embeddable(this.folder.tokenizer.encode(p, { addSpecialTokens: true }), 'prompt');
    if (p.length > 0 && typeof p[0] === 'number') return p as number[];
    if (p.length === 0) return [];
    const ids = this.folder.tokenizer.applyChatTemplate(p as ChatMessage[], { addGenerationPrompt: true, ...request.chatTemplateKwargs });
    return this.embeddable(ids, 'messages');
  }

  /**
   * A tokenizer may define added tokens past the model's vocab_size (a pad token a fine-tune
   * added without resizing the embeddings; loading refuses only a base vocabulary that does
   * not fit). A prompt using one is refused here: inside a step it would fail every request
   * batched with it.
   */
  private embeddable(ids: number[], param: string): number[] {
    const vocab = this.folder.spec.vocabSize;
    const bad = ids.find((id) => id >= vocab);
    if (bad === undefined) return ids;
    throw new AutoGlmError(
      'invalid_request',
      `the ${param} encodes to token ${JSON.stringify(this.folder.tokenizer.tokenString(bad) ?? '')} (id ${bad}), ` +
        `which the tokenizer defines but the model's vocabulary of ${vocab} lacks`,
      { param },
    );
  }

  private cacheKeyOf(
    request: GenerateRequest,
    promptTokenIds: number[],
    maxTokens: number,
    sampling: ResolvedSampling,
    responseFormat: string | undefined,
    loraKey: string | undefined,
  ): string {
    return this.responseCache.key({
      model: this.modelName,
      // the adapter and which load of it: a reloaded name may hold other weights
      lora: loraKey,
      promptTokenIds,
      maxTokens,
      sampling: {
        temperature: sampling.temperature,
        topK: sampling.topK,
        topP: sampling.topP,
        minP: sampling.minP,
        repetitionPenalty: sampling.repetitionPenalty,
        frequencyPenalty: sampling.frequencyPenalty,
        presencePenalty: sampling.presencePenalty,
        seed: sampling.seeded ? sampling.seed : undefined,
        logitBias: sampling.logitBias && Object.fromEntries(sampling.logitBias),
      },
      stop: request.stop,
      includeStopStrInOutput: request.includeStopStrInOutput,
      minTokens: request.minTokens,
      stopTokenIds: request.stopTokenIds,
      ignoreEos: request.ignoreEos,
      logprobs: request.logprobs,
      topLogprobs: request.topLogprobs,
      promptLogprobs: request.promptLogprobs,
      resumeTokenIds: request.resumeTokenIds,
      // the format's own key: canonicalJson would sort a schema's properties, whose order decides the output
      responseFormat,
    });
  }

  private cancel(id: string): void {
    const a = this.active.get(id);
    if (!a) return;
    this.finish(a, 'cancelled');
  }

  /** Frees what a request holds: its KV blocks (at once) and its token-count slot. */
  private release(a: ActiveRequest, reason: 'stop' | 'length' | 'cancelled'): void {
    this.scheduler.finishRequest(a.id, reason);
    this.active.delete(a.id);
    a.detachSignal();
    if (a.loraSlot !== undefined) this.loraRegistry.release(a.loraSlot);
    if (a.countsSlot >= 0) {
      // additions queued for it would land after the next owner's reset
      this.runner.counts.dropQueued(a.countsSlot);
      this.freeCountSlots.push(a.countsSlot);
    }
  }

  private finish(a: ActiveRequest, reason: 'stop' | 'length' | 'cancelled', last?: TokenEvent): void {
    this.release(a, reason);
    const metrics = this.metricsOf(a);
    if (metrics) {
      this.finishedRequests++;
      this.ttftMsSum += metrics.timeToFirstTokenMs;
      this.tpotMsSum += metrics.timePerOutputTokenMs;
    }
    if (last) {
      if (metrics) last.metrics = metrics;
      a.channel.push(last);
      if (a.cacheKey && reason !== 'cancelled') {
        a.events.push(structuredClone(last));
        this.responseCache.set(a.cacheKey, a.events);
      }
    }
    a.channel.close();
  }

  /** A request's timings once it has a token (cancelled before its first: none). */
  private metricsOf(a: ActiveRequest): RequestMetrics | undefined {
    if (a.firstTokenAtMs === undefined || a.lastTokenAtMs === undefined) return undefined;
    const generatedTokens = a.generatedTokenIds.length - (a.request.resumeTokenIds?.length ?? 0);
    return {
      ...timingsBetween(a.admittedAtMs, a.firstTokenAtMs, a.lastTokenAtMs, generatedTokens),
      preemptions: a.preemptions,
      responseCacheHit: false,
    };
  }

  /** Starts the step loop if it is idle. */
  private kick(): void {
    if (this.loopRunning) return;
    this.loopRunning = true;
    setImmediate(() => {
      this.loop()
        .catch((e) => this.failAll(e))
        .finally(() => {
          this.loopRunning = false;
          if (this.active.size > 0 && !this.closed) this.kick();
        });
    });
  }

  private async loop(): Promise<void> {
    while (this.scheduler.hasUnfinished() && !this.closed) {
      const out = this.scheduler.schedule();
      for (const id of out.preempted) {
        const a = this.active.get(id);
        if (a) a.preemptions++;
        if (a && a.countsSlot >= 0) {
          // counts are rebuilt from host-side tokens when it runs again
          this.runner.counts.dropQueued(a.countsSlot);
          this.freeCountSlots.push(a.countsSlot);
          a.countsSlot = -1;
          a.countsStale = true;
        }
      }
      if (out.sequences.length === 0) {
        this.scheduler.updateFromOutput(new Map());
        await new Promise((r) => setImmediate(r));
        continue;
      }
      const masks = this.tokenMasksFor(out.sequences);
      // a request whose constraint failed was failed alone, and leaves the step
      const scheduled = out.sequences.filter((s) => this.active.has(s.requestId));
      if (scheduled.length === 0) {
        this.scheduler.updateFromOutput(new Map());
        continue;
      }
      const seqs: RunnerSequence[] = scheduled.map((s) => {
        const a = this.active.get(s.requestId)!;
        const sampledRows = 1 + (s.draftTokenIds?.length ?? 0);
        return {
          tokenIds: s.tokenIds,
          startPosition: s.startPosition,
          blockTable: s.blockTable,
          sampling: s.sample ? this.samplingRowFor(s.requestId) : undefined,
          sampledRows,
          // min_tokens may be reached within the drafts: the bans end at the row it is
          logitBiases: s.sample ? Array.from({ length: sampledRows }, (_, j) => logitBiasOf(a, j)) : undefined,
          tokenMasks: s.sample ? masks.get(s.requestId) : undefined,
          score: s.scoreTargets && { targets: s.scoreTargets, topLogprobs: a.request.promptLogprobs ?? 0 },
          adapter: a.loraSlot,
        };
      });
      for (const s of scheduled) {
        const a = this.active.get(s.requestId);
        if (a && a.cachedPromptTokens === undefined) a.cachedPromptTokens = this.scheduler.requestStats(s.requestId)?.numCachedPromptTokens;
      }
      const stepStart = performance.now();
      let result: Awaited<ReturnType<ModelRunner['step']>>;
      try {
        result = await this.runner.step(seqs);
      } catch (e) {
        this.failStep(e);
        continue;
      }
      const rows = seqs.reduce((n, s) => n + s.tokenIds.length, 0);
      // a decode step computes only rows it samples (draft rows included)
      const kind = this.steps[rows > seqs.reduce((n, s) => n + (s.sampling ? (s.sampledRows ?? 1) : 0), 0) ? 'prefill' : 'decode'];
      kind.count++;
      kind.ms += performance.now() - stepStart;
      kind.rows += rows;
      // each sequence's sampled rows, adjacent and in order
      const sampled = new Map<string, number[]>();
      const firstRow = new Map<string, number>();
      if (result) {
        result.sequenceIndex.forEach((seqIdx, row) => {
          const id = scheduled[seqIdx]!.requestId;
          if (!sampled.has(id)) {
            sampled.set(id, []);
            firstRow.set(id, row);
          }
          sampled.get(id)!.push(result.tokenIds[row]!);
        });
      }
      const update = this.scheduler.updateFromOutput(sampled);
      const lengthFinished = new Set(update.finished.map((f) => f.requestId));
      // before the sampled rows: the last prompt chunk's scores go out with the first token
      if (result) this.recordPromptScores(result, scheduled);
      if (result) {
        for (const [id, count] of update.appended) {
          const from = firstRow.get(id)!;
          // a token that finishes the request (EOS, a stop string) releases it: the rest are dropped
          for (let row = from; row < from + count && this.active.has(id); row++) {
            this.emitSampled(this.active.get(id)!, result, row, lengthFinished.has(id) && row === from + count - 1);
          }
          // the GPU counted the first row's token only: kept drafts' are added before the next sampling
          const a = this.active.get(id);
          if (a?.wantsPenalties && a.countsSlot >= 0 && count > 1) {
            this.runner.counts.addGenerated(a.countsSlot, Array.from(result.tokenIds.subarray(from + 1, from + count)));
          }
        }
      }
    }
  }

  /** A sampled row's token, through the request's constraint, counters and output. */
  private emitSampled(a: ActiveRequest, result: StepResult, row: number, hitLength: boolean): void {
    const tokenId = result.tokenIds[row]!;
    if (a.constraint && !this.advanceConstraint(a, tokenId)) return;
    this.generationTokens++;
    a.lastTokenAtMs = performance.now();
    a.firstTokenAtMs ??= a.lastTokenAtMs;
    a.generatedTokenIds.push(tokenId);
    const top = result.top ? this.topLogprobsOf(result.top.ids, result.top.logprobs, row, a.request.topLogprobs ?? 0) : undefined;
    const logprob = a.request.logprobs || (a.request.topLogprobs ?? 0) > 0 ? result.logprobs?.[row] : undefined;
    this.onToken(a, tokenId, logprob, top, hitLength);
  }

  private onToken(
    a: ActiveRequest,
    tokenId: number,
    logprob: number | undefined,
    topLogprobs: TokenEvent['topLogprobs'],
    hitLength: boolean,
  ): void {
    const step = a.output.push(tokenId);
    const reason = step.finishReason ?? (hitLength ? 'length' : undefined);
    const event: TokenEvent = { text: step.text, tokenId, index: step.index };
    if (a.promptLogprobs && a.output.numGenerated === 1) event.promptLogprobs = a.promptLogprobs;
    if (logprob !== undefined) {
      event.logprob = logprob;
      event.logprobToken = this.logprobTokens.of(tokenId);
    }
    if (topLogprobs) event.topLogprobs = topLogprobs;
    if (reason) {
      event.finishReason = reason;
      event.usage = {
        promptTokens: a.promptTokenIds.length,
        completionTokens: a.output.numGenerated,
        cachedPromptTokens: a.cachedPromptTokens ?? 0,
      };
      this.finish(a, reason, event);
      return;
    }
    a.channel.push(event);
    // a copy: the consumer owns the event it was given, and may change it
    if (a.cacheKey) a.events.push(structuredClone(event));
  }

  /**
   * Each constrained sampled row's mask, computed on the host before the step is recorded
   * (masks are cached by grammar state, so most steps only look one up). A constraint that
   * throws fails its own request, which leaves the step; the others go on.
   */
  private tokenMasksFor(sequences: readonly ScheduledSequence[]): Map<string, (Uint32Array | undefined)[]> {
    const masks = new Map<string, (Uint32Array | undefined)[]>();
    for (const s of sequences) {
      const a = this.active.get(s.requestId);
      if (!s.sample || !a?.constraint) continue;
      try {
        // no mask: the constraint does not apply at this token (a reasoning model still reasoning)
        const first = a.constraint.mask() ?? undefined;
        const rows = [first, ...(s.draftTokenIds ? draftMasks(a.constraint, first, s.draftTokenIds) : [])];
        if (rows.some((m) => m !== undefined)) masks.set(s.requestId, rows);
      } catch (e) {
        this.failRequests([s.requestId], constraintFailure(e));
      }
    }
    return masks;
  }

  /** Moves a request's constraint past its sampled token; false (and the request failed) if the token does not fit. */
  private advanceConstraint(a: ActiveRequest, tokenId: number): boolean {
    try {
      a.constraint!.accept(tokenId);
      return true;
    } catch (e) {
      this.failRequests([a.id], constraintFailure(e));
      return false;
    }
  }

  /** Stores the logprobs of a step's scored prompt rows with their requests (the prompt token each row predicts). */
  private recordPromptScores(result: StepResult, scheduled: readonly ScheduledSequence[]): void {
    result.scored.forEach(({ sequence, row }, k) => {
      const seq = scheduled[sequence]!;
      const a = this.active.get(seq.requestId);
      if (!a?.promptLogprobs) return; // finished while the step ran
      const resultRow = result.sequenceIndex.length + k;
      const tokenId = seq.scoreTargets![row]!;
      const n = a.request.promptLogprobs ?? 0;
      a.promptLogprobs[seq.startPosition + row + 1] = {
        tokenId,
        ...this.logprobTokens.of(tokenId),
        logprob: result.logprobs![resultRow]!,
        rank: result.ranks![resultRow]!,
        topLogprobs: (result.top && this.topLogprobsOf(result.top.ids, result.top.logprobs, resultRow, n)) ?? [],
      };
    });
  }

  private topLogprobsOf(ids: Uint32Array, logprobs: Float32Array, row: number, n: number): TokenEvent['topLogprobs'] {
    if (n <= 0) return undefined;
    const out = [];
    for (let i = 0; i < n; i++) {
      const id = ids[row * 20 + i]!;
      if (id === 0xffffffff) break;
      // masked tokens (forbidden by a response_format, or a NaN / -inf logit) are no
      // alternatives: the sampler lists them last, at about -3e38, when too few others exist
      if (logprobs[row * 20 + i]! <= MASKED_LOGPROB) break;
      out.push({ tokenId: id, ...this.logprobTokens.of(id), logprob: logprobs[row * 20 + i]! });
    }
    return out;
  }

  private samplingRowFor(id: string): RunnerSequence['sampling'] {
    const a = this.active.get(id)!;
    const s = a.sampling;
    if (a.wantsPenalties && a.countsSlot < 0) {
      const slot = this.freeCountSlots.pop();
      if (slot === undefined) throw new AutoGlmError('internal_error', 'no token-count slot free for a running sequence');
      a.countsSlot = slot;
    }
    if (a.wantsPenalties && a.countsStale) {
      this.runner.counts.resetSlot(a.countsSlot, a.promptTokenIds, a.generatedTokenIds);
      a.countsStale = false;
    }
    return {
      temperature: s.temperature,
      topK: s.topK,
      topP: s.topP,
      minP: s.minP,
      repetitionPenalty: s.repetitionPenalty,
      frequencyPenalty: s.frequencyPenalty,
      presencePenalty: s.presencePenalty,
      seed: s.seed,
      countsSlot: a.wantsPenalties ? a.countsSlot : -1,
      logprobs: Boolean(a.request.logprobs) || (a.request.topLogprobs ?? 0) > 0,
      topLogprobs: a.request.topLogprobs ?? 0,
    };
  }

  /**
   * Running a step threw: the requests in that step get the error and the rest carry on.
   * Input checks are meant to stop bad requests before any step, so what reaches here is a
   * GPU error or an engine bug, reported as such (not as the 4xx the message may describe,
   * which an innocent request batched with the culprit would otherwise be given).
   */
  private failStep(e: unknown): void {
    this.failRequests(this.scheduler.abandonStep(), isAutoGlmError(e) && e.code.startsWith('gpu_') ? e : stepFailure(e));
  }

  /** The step loop itself failed (outside a step): every request in flight fails, not the process. */
  private failAll(e: unknown): void {
    this.scheduler.abandonStep();
    this.failRequests([...this.active.keys()], e instanceof AutoGlmError ? e : stepFailure(e));
  }

  private failRequests(ids: readonly string[], err: AutoGlmError): void {
    for (const id of ids) {
      const a = this.active.get(id);
      if (!a) continue;
      this.release(a, 'cancelled');
      a.channel.fail(err);
    }
  }

  /**
   * Runs a few short generations (warm-up.ts) so that the kernels' shaders compile now
   * rather than in the first real requests: a server calls it before it reports ready. On
   * lavapipe with a cold shader cache the demo model's first request took 21.5 s instead
   * of 0.2 s, and the first burst of 8 requests 25 s instead of 0.6 s. Afterwards the
   * counters start from zero and the response cache is empty.
   * Resolves with the time it took, in ms.
   */
  async warmUp(): Promise<number> {
    const t0 = performance.now();
    const { gemvMaxRows } = defaultMatmulTuning(this.rt);
    for (const wave of warmUpWaves(this.folder.spec.vocabSize, this.contextLength, this.scheduler.maxBatchSequences, gemvMaxRows)) {
      await Promise.all(wave.map((request) => this.complete(request)));
    }
    if (this.constraintsUsable() && this.contextLength >= 5) {
      // compiles the token-mask kernel too
      await this.complete({ prompt: [0], maxTokens: 2, responseFormat: { type: 'json_object' }, requestId: 'warm-up-json' });
    }
    if (this.scheduler.speculation && this.contextLength >= 12) {
      // draft rows: a prompt that repeats itself, so that prompt lookup proposes from the first decode on
      const prompt = Array.from({ length: 8 }, (_, i) => (i % 3) + 1);
      await this.complete({ prompt, maxTokens: 3, ignoreEos: true, requestId: 'warm-up-speculative' });
    }
    await this.warmUpLora();
    if (this.scheduler.maxScoreRows > 0 && this.contextLength >= 5) {
      // prompt logprobs (echo): the LM head over a step's scored rows, a taller matmul than
      // sampling's; a prompt as long as the first wave's, whose scored rows take the tall GEMM tiling
      const n = Math.min(72, this.scheduler.maxScoreRows + 1, this.contextLength - 2);
      const prompt = Array.from({ length: n }, (_, i) => (i * 31 + 5) % this.folder.spec.vocabSize);
      await this.complete({ prompt, maxTokens: 1, promptLogprobs: 1, requestId: 'warm-up-prompt-logprobs' });
    }
    this.responseCache.clear();
    this.statsBaseline = null;
    const s = this.stats();
    this.statsBaseline = Object.fromEntries(CUMULATIVE_STATS.map((k) => [k, s[k]])) as Pick<EngineStats, CumulativeStat>;
    return performance.now() - t0;
  }

  /**
   * The adapters' kernels: a prompt chunk long enough for the GEMM path, then decode steps
   * through the per-row kernels (and the down projection's activation pass at decode widths).
   * With slots but no adapter yet (kept for run-time loading), an empty adapter stands in,
   * in a free slot, so that the first adapter loaded does not compile them in a client's request.
   */
  private async warmUpLora(): Promise<void> {
    const loras = this.runner.model.loras;
    const n = LORA_GEMM_MIN_ROWS + 8;
    if (!loras || this.contextLength < n + 4) return;
    const standIn = this.loraNames.length === 0;
    if (standIn) await this.placeLora(WARM_UP_LORA, () => emptyLoraAdapter(WARM_UP_LORA, this.folder.spec.numLayers));
    const lora = this.loraNames[0]!;
    try {
      const prompt = Array.from({ length: n }, (_, i) => (i * 17 + 3) % this.folder.spec.vocabSize);
      await this.complete({ prompt, maxTokens: 3, ignoreEos: true, lora, requestId: 'warm-up-lora' });
    } finally {
      if (standIn) this.unloadLora(WARM_UP_LORA);
    }
  }

  /**
   * Reads the vocabulary as bytes for response_format now (about a second for 150k tokens)
   * rather than in the first request that asks for JSON. False when the tokenizer cannot be
   * read so: each request with a format is then refused, with the reason.
   */
  private constraintsUsable(): boolean {
    try {
      this.constraints.prepare();
      return true;
    } catch {
      return false;
    }
  }

  /** Non-null once the GPU device is lost: nothing can run on this engine again. */
  fault(): string | null {
    const lost = this.rt.ctx.lostReason;
    return lost === null ? null : `the GPU device was lost (${lost}); this engine cannot serve until the process restarts`;
  }

  stats(): EngineStats {
    const s = this.scheduler.stats();
    const rc = this.responseCache.stats();
    const masks = this.constraints.maskCacheStats();
    const stats: EngineStats = {
      modelName: this.modelName,
      adapterName: this.rt.adapterName,
      waiting: s.numWaiting,
      running: s.numRunning,
      ...(this.loraRegistry.capacity > 0
        ? { loraRequests: { running: s.runningLoras, waiting: s.waitingLoras, maxLoras: this.loraRegistry.capacity } }
        : {}),
      kvBlocksTotal: s.kvBlocksTotal,
      kvBlocksUsed: s.kvBlocksUsed,
      kvBlocksFree: s.kvBlocksFree,
      kvBlockSize: s.kvBlockSize,
      prefixCacheQueries: s.prefixCacheQueries,
      prefixCacheHits: s.prefixCacheHits,
      responseCacheHits: rc.hits,
      responseCacheMisses: rc.misses,
      preemptions: s.preemptions,
      promptTokens: this.promptTokens,
      generationTokens: this.generationTokens,
      finishedRequests: this.finishedRequests,
      timeToFirstTokenMsSum: this.ttftMsSum,
      timePerOutputTokenMsSum: this.tpotMsSum,
      prefillSteps: this.steps.prefill.count,
      prefillStepMsSum: this.steps.prefill.ms,
      prefillStepRows: this.steps.prefill.rows,
      decodeSteps: this.steps.decode.count,
      decodeStepMsSum: this.steps.decode.ms,
      decodeStepRows: this.steps.decode.rows,
      constrainedRequests: this.constrainedRequests,
      tokenMaskQueries: masks.hits + masks.misses,
      tokenMaskCacheHits: masks.hits,
      specDecodeDrafts: s.specDecodeDrafts,
      specDecodeDraftTokens: s.specDecodeDraftTokens,
      specDecodeAcceptedTokens: s.specDecodeAcceptedTokens,
    };
    if (this.statsBaseline) for (const k of CUMULATIVE_STATS) stats[k] -= this.statsBaseline[k];
    return stats;
  }

  /**
   * Ends every request still running or queued with a server_draining error, waits for an
   * in-flight step, and frees the GPU. Calling it again returns the same promise, which
   * resolves once everything is freed (a second call used to resolve at once, before the
   * first had destroyed anything).
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    // An error, not a quiet end: a stream that just stopped read as complete (the server
    // answered it with finish_reason 'length') and complete() threw an internal_error.
    this.failRequests([...this.active.keys()], new AutoGlmError('server_draining', 'the engine was closed before the request finished'));
    // let an in-flight step finish before its buffers go
    while (this.loopRunning) await new Promise((r) => setTimeout(r, 5));
    this.runner.destroy();
    this.rt.destroy();
  }
}

/**
 * Delivers a response-cache hit: the stored events, the last one with this delivery's own
 * timings (a replay takes microseconds, not the original's generation time).
 */
function replayCached(events: readonly TokenEvent[], channel: EventChannel<TokenEvent>, admittedAtMs: number): void {
  const firstAtMs = performance.now();
  // copies: the stored events serve every later hit, whatever this consumer does with its own
  events.forEach((ev, i) => {
    if (i < events.length - 1) return channel.push(structuredClone(ev));
    const metrics: RequestMetrics = {
      ...timingsBetween(admittedAtMs, firstAtMs, performance.now(), events.length),
      preemptions: 0,
      responseCacheHit: true,
    };
    channel.push({ ...structuredClone(ev), metrics });
  });
  channel.close();
}

/** RequestMetrics' timings from admission, first and last token times (ms) and the tokens generated. */
function timingsBetween(
  admittedAtMs: number,
  firstAtMs: number,
  lastAtMs: number,
  generatedTokens: number,
): Pick<RequestMetrics, 'timeToFirstTokenMs' | 'timePerOutputTokenMs' | 'e2eMs' | 'generatedTokens'> {
  return {
    timeToFirstTokenMs: firstAtMs - admittedAtMs,
    timePerOutputTokenMs: generatedTokens > 1 ? (lastAtMs - firstAtMs) / (generatedTokens - 1) : 0,
    e2eMs: lastAtMs - admittedAtMs,
    generatedTokens,
  };
}

/** Far below any real logprob: what a masked alternative's logprob (about -3e38) is compared with. */
const MASKED_LOGPROB = -1e30;

/**
 * A resumed request's tokens were generated elsewhere under the same format: they are fed
 * to its constraint first, so the next mask continues the text where they leave it.
 */
function replayResumed(constraint: OutputConstraint, resumeTokenIds: readonly number[]): void {
  resumeTokenIds.forEach((id, i) => {
    try {
      constraint.accept(id);
    } catch {
      throw new AutoGlmError(
        'invalid_request',
        `resume_token_ids do not follow the output's format: token ${id} (at ${i}) does not continue the text it allows`,
        { param: 'resume_token_ids' },
      );
    }
  });
}

/** The format's part of a response-cache key: reasoning tags change where it applies, so they are part of it. */
function formatCacheKey(formatKey: string, reasoning: ReasoningTags | undefined): string {
  return reasoning ? `${formatKey} after ${JSON.stringify([reasoning.start, reasoning.end, reasoning.startsInside])}` : formatKey;
}

/** A constraint failed in the middle of a request: an engine fault, reported to that request alone. */
function constraintFailure(e: unknown): AutoGlmError {
  return isAutoGlmError(e)
    ? e
    : new AutoGlmError('internal_error', `constrained decoding failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

function stepFailure(e: unknown): AutoGlmError {
  return new AutoGlmError('internal_error', `engine step failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}
