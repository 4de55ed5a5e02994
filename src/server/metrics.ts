import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EngineStats, FinishReason } from '../engine/types.js';

const LATENCY_BUCKETS_S = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const TPOT_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5];

/**
 * vLLM's metric names under an `autoglm:` prefix, so dashboards and autoscalers written
 * for vLLM carry over. Engine-side figures (queue, KV cache, prefix cache) are read from
 * engine.stats() at scrape time; request-side figures are observed by the handlers.
 * One registry per server, so several servers in one process do not collide.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly httpRequests: Counter<'route' | 'status'>;
  private readonly success: Counter<'finished_reason'>;
  private readonly promptTokens: Counter;
  private readonly generationTokens: Counter;
  private readonly ttft: Histogram;
  private readonly tpot: Histogram;
  private readonly requestTpot: Histogram;
  private readonly e2e: Histogram;
  private readonly queueTime: Histogram;

  constructor(stats: () => EngineStats | null, modelName: () => string) {
    const r = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.httpRequests = new Counter({
      name: 'autoglm:http_requests_total',
      help: 'HTTP requests by route and status code.',
      labelNames: ['route', 'status'],
      registers: r,
    });
    this.success = new Counter({
      name: 'autoglm:request_success_total',
      help: 'Finished generation requests by finish reason.',
      labelNames: ['finished_reason'],
      registers: r,
    });
    this.promptTokens = new Counter({ name: 'autoglm:prompt_tokens_total', help: 'Prefill tokens processed.', registers: r });
    this.generationTokens = new Counter({ name: 'autoglm:generation_tokens_total', help: 'Tokens generated.', registers: r });
    this.ttft = new Histogram({
      name: 'autoglm:time_to_first_token_seconds',
      help: 'Time from request arrival to its first token.',
      buckets: LATENCY_BUCKETS_S,
      registers: r,
    });
    this.tpot = new Histogram({
      name: 'autoglm:time_per_output_token_seconds',
      help: 'Time between consecutive output tokens.',
      buckets: TPOT_BUCKETS_S,
      registers: r,
    });
    this.requestTpot = new Histogram({
      name: 'autoglm:request_time_per_output_token_seconds',
      help: "A request's mean time per output token after its first (requests of two or more tokens).",
      buckets: TPOT_BUCKETS_S,
      registers: r,
    });
    this.e2e = new Histogram({
      name: 'autoglm:e2e_request_latency_seconds',
      help: 'Time from request arrival to its last token.',
      buckets: LATENCY_BUCKETS_S,
      registers: r,
    });
    this.queueTime = new Histogram({
      name: 'autoglm:request_queue_time_seconds',
      help: 'Time from request arrival until the engine accepted it (tokenisation and admission).',
      buckets: LATENCY_BUCKETS_S,
      registers: r,
    });

    const gauge = (name: string, help: string, read: (s: EngineStats) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['model_name'],
        registers: r,
        collect() {
          const s = stats();
          if (s) this.set({ model_name: modelName() }, read(s));
        },
      });
    };
    gauge('autoglm:num_requests_running', 'Sequences in the running batch.', (s) => s.running);
    gauge('autoglm:num_requests_waiting', 'Sequences waiting for admission.', (s) => s.waiting);
    // vLLM's: one series whose labels name the adapters in use, valued at the scrape's time
    new Gauge({
      name: 'autoglm:lora_requests_info',
      help: 'LoRA adapters of running and waiting requests (comma-separated labels) and how many are loaded.',
      labelNames: ['running_lora_adapters', 'waiting_lora_adapters', 'max_lora'],
      registers: r,
      collect() {
        this.reset();
        const l = stats()?.loraRequests;
        if (!l) return;
        const labels = {
          running_lora_adapters: l.running.join(','),
          waiting_lora_adapters: l.waiting.join(','),
          max_lora: String(l.maxLoras),
        };
        this.set(labels, Date.now() / 1000);
      },
    });
    gauge('autoglm:kv_cache_usage_perc', 'Fraction of KV-cache blocks in use (0..1).', (s) =>
      s.kvBlocksTotal > 0 ? s.kvBlocksUsed / s.kvBlocksTotal : 0,
    );
    gauge('autoglm:kv_cache_blocks_total', 'KV-cache blocks in the pool.', (s) => s.kvBlocksTotal);
    gauge(
      'autoglm:kv_cache_blocks_free',
      'KV-cache blocks no request holds (some still keep a reusable cached prefix).',
      (s) => s.kvBlocksFree,
    );
    // vLLM exposes these as counters; the engine keeps the running totals, so each scrape
    // adds what each series gained since the last one. A series is its extra labels and the
    // total it reads.
    type Series = { labels: Record<string, string>; read: (s: EngineStats) => number };
    const totalsCounter = (name: string, help: string, extraLabels: string[], series: Series[]): void => {
      const last = series.map(() => 0);
      new Counter({
        name,
        help,
        labelNames: ['model_name', ...extraLabels],
        registers: r,
        collect() {
          const s = stats();
          if (!s) return;
          series.forEach((x, i) => {
            const now = x.read(s);
            if (now > last[i]!) this.inc({ model_name: modelName(), ...x.labels }, now - last[i]!);
            last[i] = Math.max(last[i]!, now);
          });
        },
      });
    };
    const engineCounter = (name: string, help: string, read: (s: EngineStats) => number): void =>
      totalsCounter(name, help, [], [{ labels: {}, read }]);
    engineCounter('autoglm:prefix_cache_queries_total', 'Prompt tokens looked up in the prefix cache.', (s) => s.prefixCacheQueries);
    engineCounter('autoglm:prefix_cache_hits_total', 'Prompt tokens found in the prefix cache.', (s) => s.prefixCacheHits);
    engineCounter('autoglm:num_preemptions_total', 'Sequences preempted for lack of KV blocks.', (s) => s.preemptions);
    engineCounter('autoglm:response_cache_hits_total', 'Requests answered from the response cache.', (s) => s.responseCacheHits);
    engineCounter(
      'autoglm:constrained_requests_total',
      'Requests decoded under a grammar (response_format json_object / json_schema, a required tool call).',
      (s) => s.constrainedRequests,
    );
    engineCounter(
      'autoglm:token_mask_queries_total',
      'Token masks of constrained rows looked up by grammar state.',
      (s) => s.tokenMaskQueries,
    );
    engineCounter(
      'autoglm:token_mask_cache_hits_total',
      'Token masks found cached (the rest were computed on the host on the step path).',
      (s) => s.tokenMaskCacheHits,
    );
    // vLLM's spec_decode counters: accepted / draft tokens is the acceptance rate
    engineCounter(
      'autoglm:spec_decode_num_drafts_total',
      'Decode rows that carried speculative draft tokens (prompt lookup).',
      (s) => s.specDecodeDrafts,
    );
    engineCounter('autoglm:spec_decode_num_draft_tokens_total', 'Speculative draft tokens computed.', (s) => s.specDecodeDraftTokens);
    engineCounter(
      'autoglm:spec_decode_num_accepted_tokens_total',
      'Speculative draft tokens kept (each equal to what the sampler drew at its position).',
      (s) => s.specDecodeAcceptedTokens,
    );
    engineCounter(
      'autoglm:response_cache_queries_total',
      'Deterministic requests looked up in the response cache.',
      (s) => s.responseCacheHits + s.responseCacheMisses,
    );

    // Where the engine's time goes, one series per step kind: step seconds per second is its
    // busy fraction (the accelerator's work plus each step's host work).
    const stepCounter = (name: string, help: string, read: (s: EngineStats, kind: 'prefill' | 'decode') => number): void =>
      totalsCounter(
        name,
        help,
        ['kind'],
        (['prefill', 'decode'] as const).map((kind) => ({ labels: { kind }, read: (s: EngineStats) => read(s, kind) })),
      );
    const kindHelp = 'prefill: steps with prompt chunks (and any decode rows riding along); decode: one token per sequence';
    stepCounter('autoglm:engine_steps_total', `Forward steps run, by kind (${kindHelp}).`, (s, k) =>
      k === 'prefill' ? s.prefillSteps : s.decodeSteps,
    );
    stepCounter(
      'autoglm:engine_step_seconds_total',
      'Wall time of forward steps (recording, GPU work, read-back), by kind.',
      (s, k) => (k === 'prefill' ? s.prefillStepMsSum : s.decodeStepMsSum) / 1000,
    );
    stepCounter('autoglm:engine_step_tokens_total', 'Tokens (rows) computed by forward steps, by kind.', (s, k) =>
      k === 'prefill' ? s.prefillStepRows : s.decodeStepRows,
    );
  }

  observeHttp(route: string, status: number): void {
    this.httpRequests.inc({ route, status: String(status) });
  }

  /** Tracks one generation (one choice) from arrival to finish. */
  startGeneration(arrivalMs: number): GenerationTimer {
    return new GenerationTimer(arrivalMs, this);
  }

  /** @internal used by GenerationTimer */
  record(kind: 'queue' | 'ttft' | 'tpot' | 'requestTpot' | 'e2e', seconds: number): void {
    ({ queue: this.queueTime, ttft: this.ttft, tpot: this.tpot, requestTpot: this.requestTpot, e2e: this.e2e })[kind].observe(seconds);
  }

  /** @internal used by GenerationTimer */
  finish(reason: FinishReason, promptTokens: number, generatedTokens: number): void {
    this.success.inc({ finished_reason: reason === 'cancelled' ? 'abort' : reason });
    this.promptTokens.inc(promptTokens);
    this.generationTokens.inc(generatedTokens);
  }
}

/** One generation's timings from the request's arrival at the server, in ms (what the client experiences). */
export interface GenerationTiming {
  /** Arrival to the first token; null when no token came. */
  timeToFirstTokenMs: number | null;
  /** First token to last token. */
  decodeMs: number;
  /** Tokens after the first. */
  decodeTokens: number;
  /** Arrival to the end of the generation. */
  e2eMs: number;
}

export class GenerationTimer {
  private firstTokenMs: number | null = null;
  private lastTokenMs: number | null = null;
  private tokens = 0;

  constructor(
    private readonly arrivalMs: number,
    private readonly metrics: ServerMetrics,
  ) {}

  admitted(): void {
    this.metrics.record('queue', (performance.now() - this.arrivalMs) / 1000);
  }

  token(): void {
    const now = performance.now();
    if (this.lastTokenMs === null) this.metrics.record('ttft', (now - this.arrivalMs) / 1000);
    else this.metrics.record('tpot', (now - this.lastTokenMs) / 1000);
    this.firstTokenMs ??= now;
    this.lastTokenMs = now;
    this.tokens++;
  }

  finished(reason: FinishReason, promptTokens: number, generatedTokens: number): GenerationTiming {
    const now = performance.now();
    const timing: GenerationTiming = {
      timeToFirstTokenMs: this.firstTokenMs === null ? null : this.firstTokenMs - this.arrivalMs,
      decodeMs: this.firstTokenMs === null ? 0 : this.lastTokenMs! - this.firstTokenMs,
      decodeTokens: Math.max(0, this.tokens - 1),
      e2eMs: now - this.arrivalMs,
    };
    this.metrics.record('e2e', timing.e2eMs / 1000);
    if (timing.decodeTokens > 0) this.metrics.record('requestTpot', timing.decodeMs / timing.decodeTokens / 1000);
    this.metrics.finish(reason, promptTokens, generatedTokens);
    return timing;
  }
}
