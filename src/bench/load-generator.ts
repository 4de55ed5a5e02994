/**
 * A load generator for any OpenAI-compatible endpoint, after vLLM's benchmark_serving:
 * requests are released on a gamma/Poisson arrival schedule (or all at once), at most
 * `maxConcurrency` in flight, each a streaming request with a synthetic prompt of a
 * length drawn from a distribution; results are the serving metrics of serve-metrics.ts.
 * Closed-loop "concurrency N" load is requestRate Infinity with maxConcurrency N.
 * A library: `autoglm bench serve`, bench/serve.ts and bench/cluster.ts can all call it.
 */
import { AutoGlmError } from '../errors.js';
import { arrivalOffsetsMs } from './arrivals.js';
import { describeLength, sampleLength, type LengthDistribution } from './lengths.js';
import { sendStreamingRequest, type Endpoint, type RequestRecord } from './openai-stream-client.js';
import { SeededRandom } from './random.js';
import { computeServeMetrics, type ServeMetrics, type ServiceLevelObjectives } from './serve-metrics.js';
import { syntheticPrompt, type PromptMode } from './synthetic-prompts.js';

export interface LoadOptions {
  baseUrl: string;
  /** Model name sent in requests; default: the first id from GET /v1/models. */
  model?: string;
  endpoint?: Endpoint;
  apiKey?: string;
  numRequests: number;
  /** Requests per second (default Infinity: all released at once). */
  requestRate?: number;
  /** Gamma shape of inter-arrival times; 1 = Poisson (default). */
  burstiness?: number;
  /** Cap on requests in flight (default: unlimited). */
  maxConcurrency?: number;
  inputLength: LengthDistribution;
  outputLength: LengthDistribution;
  promptMode?: PromptMode;
  /** For token-id prompts: ids are drawn below this. */
  vocabSize?: number;
  /** Keep generating past EOS so outputs have the drawn length (default true). */
  ignoreEos?: boolean;
  temperature?: number;
  seed?: number;
  timeoutMs?: number;
  /** Untimed requests sent first (one at a time) to compile kernels and warm caches. */
  warmupRequests?: number;
  slo?: ServiceLevelObjectives;
  /** Called after each request finishes. */
  onProgress?: (done: number, total: number) => void;
  /** Keep every request's record in the result (default false). */
  keepRecords?: boolean;
}

export interface LoadResult {
  config: {
    baseUrl: string;
    model: string;
    endpoint: Endpoint;
    numRequests: number;
    requestRate: number | 'inf';
    burstiness: number;
    maxConcurrency: number | null;
    inputLength: string;
    outputLength: string;
    promptMode: PromptMode;
    seed: number;
    slo: ServiceLevelObjectives;
  };
  metrics: ServeMetrics;
  /** Largest number of requests in flight at once. */
  peakConcurrency: number;
  records?: RequestRecord[];
}

interface PlannedRequest {
  offsetMs: number;
  prompt: string | number[];
  inputTokens: number;
  outputTokens: number;
}

/** The seeded plan of a run: arrival offsets, prompts and lengths (pure; tests inspect it). */
export function planRequests(options: LoadOptions): PlannedRequest[] {
  const seed = options.seed ?? 0;
  const offsets = arrivalOffsetsMs(options.numRequests, {
    requestRate: options.requestRate ?? Number.POSITIVE_INFINITY,
    burstiness: options.burstiness ?? 1,
    seed,
  });
  // Lengths and prompt words use their own stream so changing the rate keeps the prompts.
  const rng = new SeededRandom(seed ^ 0x5bd1e995);
  return offsets.map((offsetMs) => {
    const inputTokens = sampleLength(options.inputLength, rng);
    const outputTokens = sampleLength(options.outputLength, rng);
    const prompt = syntheticPrompt(inputTokens, rng, { mode: options.promptMode ?? 'text', vocabSize: options.vocabSize });
    return { offsetMs, prompt, inputTokens, outputTokens };
  });
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (!Number.isInteger(options.numRequests) || options.numRequests < 1) {
    throw new AutoGlmError('invalid_request', `numRequests must be a positive integer (got ${options.numRequests})`, {
      param: 'num-requests',
    });
  }
  if (options.maxConcurrency !== undefined && !(Number.isInteger(options.maxConcurrency) && options.maxConcurrency >= 1)) {
    throw new AutoGlmError('invalid_request', `maxConcurrency must be a positive integer (got ${options.maxConcurrency})`, {
      param: 'max-concurrency',
    });
  }
  const endpoint = options.endpoint ?? '/v1/completions';
  const model = options.model ?? (await firstModel(options.baseUrl, options.apiKey));
  const plan = planRequests(options);
  const send = (p: PlannedRequest, i: number, runStartMs: number) =>
    sendStreamingRequest(
      {
        baseUrl: options.baseUrl,
        endpoint,
        model,
        prompt: p.prompt,
        maxTokens: p.outputTokens,
        ignoreEos: options.ignoreEos ?? true,
        temperature: options.temperature ?? 0,
        seed: (options.seed ?? 0) + i,
        apiKey: options.apiKey,
        timeoutMs: options.timeoutMs ?? 600_000,
      },
      runStartMs,
    );

  // Warm-up prompts come from another seed: a response or prefix cache must not answer timed requests from them.
  const warmups = options.warmupRequests ?? 0;
  const warmPlan = warmups > 0 ? planRequests({ ...options, numRequests: warmups, seed: ((options.seed ?? 0) ^ 0x2545f491) >>> 0 }) : [];
  for (let i = 0; i < warmups; i++) {
    const warm = await send({ ...warmPlan[i]!, offsetMs: 0 }, plan.length + i, performance.now());
    if (!warm.ok) throw new AutoGlmError('upstream_error', `warm-up request failed: ${warm.error?.label}: ${warm.error?.message}`);
  }

  const limiter = new ConcurrencyLimiter(options.maxConcurrency ?? Number.POSITIVE_INFINITY);
  const records: RequestRecord[] = new Array(plan.length);
  let done = 0;
  const start = performance.now();
  const tasks: Promise<void>[] = [];
  for (let i = 0; i < plan.length; i++) {
    const p = plan[i]!;
    const waitMs = start + p.offsetMs - performance.now();
    if (waitMs > 0) await sleep(waitMs);
    tasks.push(
      limiter.run(async () => {
        records[i] = await send(p, i, start);
        done++;
        options.onProgress?.(done, plan.length);
      }),
    );
  }
  await Promise.all(tasks);
  const durationS = (performance.now() - start) / 1000;

  const metrics = computeServeMetrics(records, {
    durationS,
    requestedInputTokens: plan.map((p) => p.inputTokens),
    slo: options.slo,
  });
  return {
    config: {
      baseUrl: options.baseUrl,
      model,
      endpoint,
      numRequests: plan.length,
      requestRate: Number.isFinite(options.requestRate ?? Infinity) ? options.requestRate! : 'inf',
      burstiness: options.burstiness ?? 1,
      maxConcurrency: options.maxConcurrency ?? null,
      inputLength: describeLength(options.inputLength),
      outputLength: describeLength(options.outputLength),
      promptMode: options.promptMode ?? 'text',
      seed: options.seed ?? 0,
      slo: options.slo ?? {},
    },
    metrics,
    peakConcurrency: limiter.peak,
    ...(options.keepRecords ? { records } : {}),
  };
}

/** A counting semaphore that also remembers the most tasks it let run at once. */
class ConcurrencyLimiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  peak = 0;

  constructor(private readonly limit: number) {}

  async run(task: () => Promise<void>): Promise<void> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    this.peak = Math.max(this.peak, this.active);
    try {
      await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

async function firstModel(baseUrl: string, apiKey?: string): Promise<string> {
  try {
    const response = await fetch(new URL('/v1/models', baseUrl), { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
    const body = (await response.json()) as { data?: { id?: string }[] };
    const id = body.data?.[0]?.id;
    if (response.ok && id) return id;
    throw new Error(`status ${response.status}, no model ids`);
  } catch (e) {
    throw new AutoGlmError('upstream_error', `could not list models at ${baseUrl}/v1/models (${(e as Error).message}); pass --model-name`, {
      cause: e,
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
