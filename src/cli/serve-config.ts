import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoGlmError, isAutoGlmError } from '../errors.js';
import {
  MAX_PROMPT_LOOKUP,
  MAX_SPECULATIVE_TOKENS,
  MAX_STEP_ROWS,
  promptLookupOf,
  validateEngineEnvironment,
} from '../engine/engine-options.js';
import { MAX_LORA_ADAPTERS, validateLoraOptions } from '../engine/lora/load-adapters.js';
import { MAX_LORA_RANK } from '../engine/lora/peft-adapter.js';
import { checkKvCacheBytes } from '../engine/memory-plan.js';
import { modelSpecFromConfig } from '../engine/model/config.js';
import {
  SCHEDULING_POLICIES,
  WEIGHT_DTYPE_OPTIONS,
  type EngineOptions,
  type LoraAdapterOption,
  type SchedulingPolicy,
  type WeightDTypeOption,
} from '../engine/types.js';
import { parseKernelProfile, type KernelProfileOption } from '../kernels/kernel-profile.js';
import { REASONING_PARSER_OPTIONS, type ReasoningParserOption } from '../server/reasoning/types.js';
import { TOOL_CALL_PARSER_OPTIONS, type ToolCallParserOption } from '../server/tool-calls/types.js';
import type { CorsOptions } from '../server/cors.js';
import { ALLOWED_ORIGINS_HELP, allowedOriginsOf, flagsHelp, MS, PORT, readFlags, type FlagReader, type FlagSpec } from './flags.js';
import { withoutUndefined } from '../without-undefined.js';

/** Everything `autoglm serve` is configured by: flags first, then AUTOGLM_* env, then defaults. */
export interface ServeConfig {
  modelDir: string;
  /** True when no model was given and the bundled demo model is served. */
  usingDefaultModel: boolean;
  /** How an error names where modelDir came from: `--model`, or `AUTOGLM_MODEL (--model)`. */
  modelLabel: string;
  servedModelName: string | undefined;
  /** More names the base model answers to (--served-model-name's names after the first). */
  modelAliases: string[];
  host: string;
  port: number;
  apiKeys: string[];
  authDisabled: boolean;
  clusterSecret: string | undefined;
  rateLimit: { requestsPerSecond: number; burst: number } | undefined;
  maxBodyBytes: number;
  maxPromptTokens: number | undefined;
  maxCompletionTokens: number | undefined;
  maxPendingRequests: number;
  maxChoices: number;
  streamStallTimeoutMs: number;
  drainTimeoutMs: number;
  tls: { keyFile: string; certFile: string } | undefined;
  /** --allowed-origins (CORS); undefined: no cross-origin access. */
  cors: CorsOptions | undefined;
  /** --allow-runtime-lora-updates: POST /v1/load_lora_adapter and /v1/unload_lora_adapter. */
  allowRuntimeLoraUpdates: boolean;
  tokenizerThreads: number;
  tokenizerMinChars: number;
  register: string | undefined;
  etcd: string | undefined;
  advertiseUrl: string | undefined;
  heartbeatMs: number | undefined;
  logLevel: string;
  /** How tool calls are read from output when a request sends tools. */
  toolCallParser: ToolCallParserOption;
  /** How reasoning is split from chat output into reasoning_content. */
  reasoningParser: ReasoningParserOption;
  engine: {
    kvCacheBytes: number | undefined;
    maxBatchSequences: number | undefined;
    maxBatchTokens: number | undefined;
    maxContextTokens: number | undefined;
    /** Prompt rows scored per step for prompt logprobs / echo (EngineOptions.promptLogprobsRows); 0 refuses them. */
    promptLogprobsRows: number | undefined;
    /** Speculative decoding by prompt lookup (EngineOptions.speculativeTokens, promptLookupMin/Max). */
    speculativeTokens: number | undefined;
    /** Which waiting request runs next (EngineOptions.schedulingPolicy). */
    schedulingPolicy: SchedulingPolicy;
    /** --lora-modules (EngineOptions.loraAdapters). */
    loraAdapters: LoraAdapterOption[];
    /** --max-loras, --max-lora-rank (EngineOptions.maxLoras, maxLoraRank). */
    maxLoras: number | undefined;
    maxLoraRank: number | undefined;
    promptLookupMin: number | undefined;
    promptLookupMax: number | undefined;
    forceF32: boolean;
    /** Matmul weights' dtype (EngineOptions.weightDType); undefined = f16 where shader-f16 exists, else f32. */
    weightDType: WeightDTypeOption | undefined;
    /** Kernel variants and tile sizes (GpuOptions.kernelProfile); undefined = by the adapter. */
    kernelProfile: KernelProfileOption | undefined;
    responseCacheEntries: number | undefined;
    responseCacheBytes: number | undefined;
    /** Age after which a cached response is dropped, ms (from --response-cache-ttl, given in seconds); 0 = no expiry. */
    responseCacheTtlMs: number | undefined;
    /** Run Engine.warmUp() before /ready turns 200 (default true). */
    warmUp: boolean;
  };
}

/** The flag table: name -> kind, env variable and help. One place, so --help and env stay in step. */
const FLAGS = {
  model: { kind: 'string', help: 'model folder (config.json, *.safetensors, tokenizer.json); default: the bundled demo-stories' },
  'served-model-name': {
    kind: 'list',
    help: 'name clients pass as "model" (default: the folder name); NAME,ALIAS,...: answers are labelled with the first, all are accepted',
  },
  host: { kind: 'string', help: 'address to listen on (default 127.0.0.1)' },
  port: { ...PORT, help: 'port (default 8000; 0 picks a free one)' },
  'api-key-file': { kind: 'string', help: 'file with one API key per line' },
  'api-keys': { kind: 'list', help: 'comma-separated API keys' },
  'no-auth': { kind: 'bool', help: 'accept requests without an API key' },
  'cluster-secret': { kind: 'string', help: 'require header x-autoglm-cluster-secret on /v1 requests (behind a gateway)' },
  'rate-limit-rps': { kind: 'float', help: 'requests per second per API key (default: unlimited)' },
  'rate-limit-burst': { kind: 'int', min: 1, help: 'burst per API key (default: 2 x rps, at least 1; needs --rate-limit-rps)' },
  'max-body-bytes': { kind: 'int', min: 1, help: 'largest request body (default 4 MiB)' },
  'max-prompt-tokens': { kind: 'int', min: 1, help: 'largest prompt (default: context length)' },
  'max-tokens-limit': { kind: 'int', min: 1, help: 'largest max_tokens a client may ask for (default: context length)' },
  'max-pending-requests': { kind: 'int', min: 1, help: 'requests in flight before 429 queue_full (default 256)' },
  'max-choices': { kind: 'int', min: 1, help: 'largest n x prompts per request (default 16)' },
  'drain-timeout-ms': { ...MS, help: 'on SIGTERM, how long running requests may finish (default 30000)' },
  'stream-stall-timeout-ms': {
    ...MS,
    help: 'a streaming client that takes nothing for this long is disconnected and its request cancelled (default 60000)',
  },
  'tls-key': { kind: 'string', help: 'PEM private key (HTTPS with --tls-cert)' },
  'tls-cert': { kind: 'string', help: 'PEM certificate chain' },
  'allowed-origins': { kind: 'string', help: ALLOWED_ORIGINS_HELP },
  'tokenizer-threads': { kind: 'int', max: 256, help: 'worker threads for long-prompt tokenisation (default 2; 0 = inline; at most 256)' },
  'tokenizer-min-chars': { kind: 'int', help: 'inputs at least this long go to the worker pool (default 8192)' },
  register: { kind: 'string', help: 'gateway URL to register and heartbeat with' },
  etcd: { kind: 'string', help: 'etcd URL to register in (lease-backed key)' },
  'advertise-url': {
    kind: 'string',
    help: 'URL the gateway should use to reach this worker (default: http://host:port; read with --register or --etcd)',
  },
  'heartbeat-ms': { ...MS, min: 50, help: 'registration heartbeat interval (default 1000, at least 50; read with --register or --etcd)' },
  'log-level': { kind: 'string', help: 'pino level: fatal|error|warn|info|debug|trace|silent (default info)' },
  'tool-call-parser': {
    kind: 'string',
    help: 'how tool calls are read from output: auto (the format the chat template teaches, default), hermes, llama3_json, glm45 or none',
  },
  'reasoning-parser': {
    kind: 'string',
    help: 'how <think> reasoning is split from chat output into reasoning_content: auto (when the chat template writes <think>, default), qwen3, deepseek_r1 or none',
  },
  'kv-cache-bytes': { kind: 'int', help: 'KV cache budget in bytes' },
  'max-batch-sequences': { kind: 'int', min: 1, max: MAX_STEP_ROWS, help: 'largest decode batch' },
  'max-batch-tokens': { kind: 'int', min: 1, max: MAX_STEP_ROWS, help: 'token budget per engine step' },
  'max-context-tokens': { kind: 'int', min: 1, help: 'cap the context length below config.json' },
  'prompt-logprobs-rows': {
    kind: 'int',
    min: 0,
    max: MAX_STEP_ROWS,
    help: 'prompt rows scored per step for prompt_logprobs and echo with logprobs (default: as many as 32 MiB of logits hold; 0 refuses them)',
  },
  'num-speculative-tokens': {
    kind: 'int',
    min: 0,
    max: MAX_SPECULATIVE_TOKENS,
    help: 'speculative decoding by prompt lookup: tokens guessed per decode step from earlier text, kept where the sampler agrees (output unchanged; default 0, off)',
  },
  'scheduling-policy': {
    kind: 'string',
    help: 'which waiting request runs next: fcfs (arrival order, default) or priority (the request field priority, lowest first; refused under fcfs)',
  },
  'prompt-lookup-min': { kind: 'int', min: 1, max: MAX_PROMPT_LOOKUP, help: 'shortest suffix prompt lookup matches (default 2)' },
  'prompt-lookup-max': { kind: 'int', min: 1, max: MAX_PROMPT_LOOKUP, help: 'longest suffix prompt lookup matches (default 4)' },
  'lora-modules': {
    kind: 'list',
    help: 'LoRA adapters to serve beside the base model, NAME=PEFT_FOLDER,...: a request whose "model" is NAME runs with that adapter',
  },
  'max-loras': {
    kind: 'int',
    min: 0,
    max: MAX_LORA_ADAPTERS,
    help: 'LoRA adapter slots on the device (default: as many as --lora-modules); more leave room for /v1/load_lora_adapter',
  },
  'max-lora-rank': {
    kind: 'int',
    min: 1,
    max: MAX_LORA_RANK,
    help: 'rank of every LoRA slot (default: the largest of --lora-modules, else 16)',
  },
  'allow-runtime-lora-updates': {
    kind: 'bool',
    help: 'serve POST /v1/load_lora_adapter {lora_name, lora_path} and /v1/unload_lora_adapter {lora_name} (any API key may then make the server read adapter folders on its disk)',
  },
  'force-f32': { kind: 'bool', help: 'f32 weights and KV cache even with shader-f16' },
  'weight-dtype': {
    kind: 'string',
    help: 'matmul weights: f16 (default with shader-f16), f32, or int8 (quantized at load: half the memory and bytes per token of f16)',
  },
  'kernel-profile': { kind: 'string', help: 'kernel variants and tile sizes: auto (by the adapter, default), cpu or gpu' },
  'response-cache-entries': { kind: 'int', help: 'response cache size in entries (default 1024; 0 disables)' },
  'response-cache-bytes': { kind: 'int', help: 'response cache size in bytes (default 64 MiB; 0 disables)' },
  'response-cache-ttl': {
    kind: 'float',
    help: 'seconds a cached response stays valid (default 600; fractions allowed; 0 = until evicted)',
  },
  'no-warm-up': {
    kind: 'bool',
    help: 'skip the start-up warm-up (a few short generations that compile the kernels before /ready turns 200)',
  },
  help: { kind: 'bool', help: 'print this help' },
} as const satisfies Record<string, FlagSpec>;

type FlagName = keyof typeof FLAGS;

/** pino's levels; another name failed inside pino with a message that did not name the flag. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The bundled demo model, found from the package root whether running from src/ or dist/src/. */
export const DEFAULT_MODEL_DIR = join(packageRoot(), 'models', 'demo-stories');

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export function serveHelp(): string {
  return flagsHelp('Usage: autoglm serve [options]', FLAGS, 34);
}

/** Parses argv + env into a ServeConfig; bad values are AutoGlmError('invalid_request') naming the flag. */
export function parseServeConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ServeConfig | 'help' {
  const flags = readFlags(FLAGS, argv, env, 'autoglm serve');
  if (flags === 'help') return 'help';
  const { str, num, bool, url } = flags;
  const int = (name: FlagName): number | undefined => num(name, true);
  const keys = flags.apiKeys('api-keys', 'api-key-file');
  const authDisabled = bool('no-auth');
  // Keys with auth off were dropped without a word; say which one the operator meant.
  if (authDisabled && keys.length > 0) {
    const given = flags.has('api-keys') ? flags.label('api-keys') : flags.label('api-key-file');
    throw new AutoGlmError('invalid_request', `${flags.label('no-auth')} and ${given} contradict each other: drop one.`, {
      param: 'no-auth',
    });
  }
  const rps = num('rate-limit-rps', false);
  if (flags.has('rate-limit-burst') && !(rps !== undefined && rps > 0))
    throw new AutoGlmError('invalid_request', `${flags.label('rate-limit-burst')} needs --rate-limit-rps above 0.`, {
      param: 'rate-limit-burst',
    });
  const register = url('register');
  const etcd = url('etcd');
  // read only by a worker that registers: given without one, they would be ignored silently
  for (const name of ['advertise-url', 'heartbeat-ms'] as const) {
    if (flags.has(name) && register === undefined && etcd === undefined)
      throw new AutoGlmError('invalid_request', `${flags.label(name)} is read only with --register or --etcd (a worker that registers).`, {
        param: name,
      });
  }
  const tlsKey = str('tls-key');
  const tlsCert = str('tls-cert');
  if ((tlsKey === undefined) !== (tlsCert === undefined))
    throw new AutoGlmError('invalid_request', '--tls-key and --tls-cert go together.', { param: tlsKey ? 'tls-cert' : 'tls-key' });
  const model = str('model');
  const servedNames = [...new Set(flags.list('served-model-name'))];
  // the engine reads it only at load, after the port is bound: a typo would exit 1, not 2
  validateEngineEnvironment(env);
  const kernelProfile = parseKernelProfile(str('kernel-profile'), 'kernel-profile', flags.label('kernel-profile'));
  const weightDType = str('weight-dtype') === undefined ? undefined : flags.oneOf('weight-dtype', WEIGHT_DTYPE_OPTIONS, 'f16');
  if (weightDType === 'f16' && bool('force-f32'))
    throw new AutoGlmError(
      'invalid_request',
      `${flags.label('weight-dtype')} f16 and ${flags.label('force-f32')} contradict each other: drop one.`,
      {
        param: 'weight-dtype',
      },
    );
  checkKvCacheFlag(model ?? DEFAULT_MODEL_DIR, flags);
  const lookup = { promptLookupMin: int('prompt-lookup-min'), promptLookupMax: int('prompt-lookup-max') };
  const speculativeTokens = int('num-speculative-tokens');
  for (const name of ['prompt-lookup-min', 'prompt-lookup-max'] as const) {
    if (flags.has(name) && !(speculativeTokens! > 0))
      throw new AutoGlmError('invalid_request', `${flags.label(name)} is read only with --num-speculative-tokens above 0.`, {
        param: name,
      });
  }
  const maxLoras = int('max-loras');
  const loraAdapters = loraModulesOf(flags, maxLoras);
  const allowRuntimeLoraUpdates = bool('allow-runtime-lora-updates');
  if (allowRuntimeLoraUpdates && !((maxLoras ?? loraAdapters.length) > loraAdapters.length))
    throw new AutoGlmError(
      'invalid_request',
      `${flags.label('allow-runtime-lora-updates')} needs ${flags.label('max-loras')} above the adapters of --lora-modules (free slots to load into).`,
      { param: 'allow-runtime-lora-updates' },
    );
  const { min: lookupMin, max: lookupMax } = promptLookupOf(lookup);
  if (lookupMin > lookupMax)
    throw new AutoGlmError(
      'invalid_request',
      `${flags.label('prompt-lookup-min')} (${lookupMin}) must not exceed ${flags.label('prompt-lookup-max')} (${lookupMax}).`,
      { param: 'prompt-lookup-min' },
    );
  return {
    modelDir: model ?? DEFAULT_MODEL_DIR,
    usingDefaultModel: model === undefined,
    modelLabel: flags.label('model'),
    servedModelName: servedNames[0],
    modelAliases: servedNames.slice(1),
    host: str('host') ?? '127.0.0.1',
    port: int('port') ?? 8000,
    apiKeys: keys,
    authDisabled,
    clusterSecret: str('cluster-secret'),
    rateLimit:
      rps !== undefined && rps > 0
        ? { requestsPerSecond: rps, burst: int('rate-limit-burst') ?? Math.max(1, Math.ceil(rps * 2)) }
        : undefined,
    maxBodyBytes: int('max-body-bytes') ?? 4 * 1024 * 1024,
    maxPromptTokens: int('max-prompt-tokens'),
    maxCompletionTokens: int('max-tokens-limit'),
    maxPendingRequests: int('max-pending-requests') ?? 256,
    maxChoices: int('max-choices') ?? 16,
    streamStallTimeoutMs: int('stream-stall-timeout-ms') ?? 60_000,
    drainTimeoutMs: int('drain-timeout-ms') ?? 30_000,
    tls: tlsKey && tlsCert ? { keyFile: tlsKey, certFile: tlsCert } : undefined,
    cors: allowedOriginsOf(flags, 'allowed-origins'),
    allowRuntimeLoraUpdates,
    tokenizerThreads: int('tokenizer-threads') ?? 2,
    tokenizerMinChars: int('tokenizer-min-chars') ?? 8192,
    register,
    etcd,
    advertiseUrl: url('advertise-url'),
    heartbeatMs: int('heartbeat-ms'),
    logLevel: flags.oneOf('log-level', LOG_LEVELS, 'info'),
    toolCallParser: flags.oneOf('tool-call-parser', TOOL_CALL_PARSER_OPTIONS, 'auto'),
    reasoningParser: flags.oneOf('reasoning-parser', REASONING_PARSER_OPTIONS, 'auto'),
    engine: {
      kvCacheBytes: int('kv-cache-bytes'),
      maxBatchSequences: int('max-batch-sequences'),
      maxBatchTokens: int('max-batch-tokens'),
      maxContextTokens: int('max-context-tokens'),
      promptLogprobsRows: int('prompt-logprobs-rows'),
      speculativeTokens,
      schedulingPolicy: flags.oneOf('scheduling-policy', SCHEDULING_POLICIES, 'fcfs'),
      loraAdapters,
      maxLoras,
      maxLoraRank: int('max-lora-rank'),
      ...lookup,
      forceF32: bool('force-f32'),
      weightDType,
      kernelProfile,
      responseCacheEntries: int('response-cache-entries'),
      responseCacheBytes: int('response-cache-bytes'),
      responseCacheTtlMs: secondsAsMs(num('response-cache-ttl', false)),
      warmUp: !bool('no-warm-up'),
    },
  };
}

/**
 * --kv-cache-bytes too small for one sequence at full context is refused with the flags
 * (exit 2, before the port is bound), not when the model loads: config.json's shapes give
 * the bytes per token. The KV dtype is the device's, so this takes the smaller, f16, unless
 * --force-f32; Engine.load checks again with the real one, before the upload. A config.json
 * that cannot be read is left to the load, which says what is wrong with it.
 */
function checkKvCacheFlag(modelDir: string, flags: FlagReader<FlagName>): void {
  const kvCacheBytes = flags.num('kv-cache-bytes', true);
  if (kvCacheBytes === undefined) return;
  const file = join(modelDir, 'config.json');
  let config: unknown;
  try {
    // a FIFO in its place would block the read
    if (!statSync(file).isFile()) return;
    config = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return;
  }
  let spec: ReturnType<typeof modelSpecFromConfig>;
  try {
    spec = modelSpecFromConfig(config as Record<string, unknown>);
  } catch {
    return;
  }
  checkKvCacheBytes(
    spec,
    { kvCacheBytes, maxContextTokens: flags.num('max-context-tokens', true) },
    flags.bool('force-f32') ? 'f32' : 'f16',
    { budget: flags.label('kv-cache-bytes'), param: 'kv-cache-bytes', maxContext: '--max-context-tokens' },
  );
}

/** The engine's options from a serve config (undefined fields left out, so the engine's defaults apply). */
export function engineOptionsOf(config: ServeConfig): EngineOptions {
  return withoutUndefined<EngineOptions>({
    servedModelName: config.servedModelName,
    kvCacheBytes: config.engine.kvCacheBytes,
    maxBatchSequences: config.engine.maxBatchSequences,
    maxBatchTokens: config.engine.maxBatchTokens,
    maxContextTokens: config.engine.maxContextTokens,
    promptLogprobsRows: config.engine.promptLogprobsRows,
    speculativeTokens: config.engine.speculativeTokens,
    schedulingPolicy: config.engine.schedulingPolicy === 'fcfs' ? undefined : config.engine.schedulingPolicy,
    loraAdapters: config.engine.loraAdapters.length > 0 ? config.engine.loraAdapters : undefined,
    maxLoras: config.engine.maxLoras,
    maxLoraRank: config.engine.maxLoraRank,
    promptLookupMin: config.engine.promptLookupMin,
    promptLookupMax: config.engine.promptLookupMax,
    forceF32: config.engine.forceF32 || undefined,
    weightDType: config.engine.weightDType,
    kernelProfile: config.engine.kernelProfile,
    responseCacheEntries: config.engine.responseCacheEntries,
    responseCacheBytes: config.engine.responseCacheBytes,
    responseCacheTtlMs: config.engine.responseCacheTtlMs,
  });
}

/** --lora-modules name=folder,... with --max-loras: checked here by the engine's own check (exit 2), read at load. */
function loraModulesOf(flags: FlagReader<FlagName>, maxLoras: number | undefined): LoraAdapterOption[] {
  const entries = flags.list('lora-modules');
  const adapters = entries.map((entry): LoraAdapterOption => {
    const eq = entry.indexOf('=');
    if (eq <= 0 || eq === entry.length - 1)
      throw new AutoGlmError('invalid_request', `${flags.label('lora-modules')} entries are NAME=FOLDER, got "${entry}".`, {
        param: 'lora-modules',
      });
    return { name: entry.slice(0, eq), path: entry.slice(eq + 1) };
  });
  try {
    validateLoraOptions({ loraAdapters: adapters, maxLoras });
  } catch (e) {
    const flag = isAutoGlmError(e) && e.param === 'maxLoras' ? 'max-loras' : 'lora-modules';
    throw new AutoGlmError('invalid_request', `${flags.label(flag)}: ${(e as Error).message}`, { param: flag });
  }
  return adapters;
}

function secondsAsMs(seconds: number | undefined): number | undefined {
  return seconds === undefined ? undefined : Math.round(seconds * 1000);
}
