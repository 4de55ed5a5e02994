import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { WORKER_STATES, type WorkerState } from '../types.js';

const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * The gateway's Prometheus metrics, named like the server's (`autoglm:` prefix).
 * `autoglm:gateway_queue_depth` (requests waiting for their first token) is the
 * autoscaling signal the HPA in deploy/ reads; its `model` label lets each model's workers
 * scale on their own queue where one gateway fronts several models.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'status'>;
  readonly retries: Counter<'reason'>;
  readonly retriesRefused: Counter<'why'>;
  readonly failovers: Counter<'outcome'>;
  readonly ejections: Counter<'worker'>;
  readonly noHealthyWorker: Counter;
  readonly inFlight: Gauge;
  readonly queueDepth: Gauge<'model'>;
  readonly duration: Histogram<'route'>;
  readonly ttft: Histogram;
  readonly attempt: Histogram<'outcome'>;
  private readonly workerState: Gauge<'worker' | 'state'>;
  readonly workerOutstanding: Gauge<'worker'>;
  readonly loraCalls: Counter<'action' | 'outcome'>;
  private readonly workerRequests: Counter<'worker' | 'outcome'>;
  /** Outcome labels seen per worker, so that a departing worker's series can all be removed. */
  private readonly workerOutcomes = new Map<string, Set<string>>();

  constructor() {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'autoglm:gateway_requests_total',
      help: 'Client requests by route and final status.',
      labelNames: ['route', 'status'],
      registers,
    });
    this.retries = new Counter({
      name: 'autoglm:gateway_retries_total',
      help: 'Attempts retried on another worker before the first token.',
      labelNames: ['reason'],
      registers,
    });
    this.retriesRefused = new Counter({
      name: 'autoglm:gateway_retries_refused_total',
      help: 'Failed attempts not retried: attempts used up, deadline passed, the retry budget spent, or a second worker answering the request 500 (request).',
      labelNames: ['why'],
      registers,
    });
    this.loraCalls = new Counter({
      name: 'autoglm:gateway_lora_calls_total',
      help: 'Run-time LoRA loads and unloads sent to workers (the cluster-wide routes and keeping workers in line), by outcome: ok, refused (a 4xx), failed (no answer or a 5xx).',
      labelNames: ['action', 'outcome'],
      registers,
    });
    this.failovers = new Counter({
      name: 'autoglm:gateway_failovers_total',
      help: 'Streams cut mid-way and resumed on another worker.',
      labelNames: ['outcome'],
      registers,
    });
    this.ejections = new Counter({
      name: 'autoglm:gateway_ejections_total',
      help: 'Passive outlier ejections.',
      labelNames: ['worker'],
      registers,
    });
    this.noHealthyWorker = new Counter({
      name: 'autoglm:gateway_no_healthy_worker_total',
      help: 'Requests refused because no worker was healthy.',
      registers,
    });
    this.inFlight = new Gauge({ name: 'autoglm:gateway_requests_in_flight', help: 'Client requests being served.', registers });
    this.queueDepth = new Gauge({
      name: 'autoglm:gateway_queue_depth',
      help: "Requests waiting for their first token (the autoscaling signal), by the base model of the workers that serve the request's model ('unknown' when no worker says it does).",
      labelNames: ['model'],
      registers,
    });
    this.duration = new Histogram({
      name: 'autoglm:gateway_request_duration_seconds',
      help: 'End-to-end latency through the gateway.',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.ttft = new Histogram({
      name: 'autoglm:gateway_time_to_first_token_seconds',
      help: 'Time to the first streamed token through the gateway.',
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.attempt = new Histogram({
      name: 'autoglm:gateway_upstream_attempt_seconds',
      help: 'Upstream attempts by outcome.',
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.workerState = new Gauge({
      name: 'autoglm:gateway_worker_state',
      help: '1 for the state each worker is in.',
      labelNames: ['worker', 'state'],
      registers,
    });
    this.workerOutstanding = new Gauge({
      name: 'autoglm:gateway_worker_outstanding_requests',
      help: 'Requests in flight per worker.',
      labelNames: ['worker'],
      registers,
    });
    this.workerRequests = new Counter({
      name: 'autoglm:gateway_worker_requests_total',
      help: 'Requests sent to each worker (retries included), by how the attempt opened: ok, http_<status>, connect, reset, timeout.',
      labelNames: ['worker', 'outcome'],
      registers,
    });
  }

  setWorkerState(worker: string, state: WorkerState | null): void {
    for (const s of WORKER_STATES) {
      if (state === null) this.workerState.remove({ worker, state: s });
      else this.workerState.set({ worker, state: s }, s === state ? 1 : 0);
    }
    if (state === null) {
      // A worker that left takes its series with it: worker ids churn (pods), and Prometheus copes with a counter that disappears.
      this.workerOutstanding.remove({ worker });
      for (const outcome of this.workerOutcomes.get(worker) ?? []) this.workerRequests.remove({ worker, outcome });
      this.workerOutcomes.delete(worker);
    }
  }

  /** One attempt sent to `worker`; `outcome` is `ok`, `http_<status>`, or a failure kind. */
  countWorkerRequest(worker: string, outcome: string): void {
    let seen = this.workerOutcomes.get(worker);
    if (!seen) this.workerOutcomes.set(worker, (seen = new Set()));
    seen.add(outcome);
    this.workerRequests.inc({ worker, outcome });
  }
}
