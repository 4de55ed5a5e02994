/**
 * Run-time LoRA adapters across the workers behind a gateway (--allow-runtime-lora-updates).
 *
 * A load or unload sent to the gateway goes to every worker. The gateway then keeps the
 * workers in line with the adapters loaded so far: each ready probe says which adapters a
 * worker serves (worker-report.ts), and a worker that lacks one (it restarted, it is new, it
 * was down during the load) is given it, with a growing pause after each refusal or failure.
 *
 * The state lives in the workers, not in one gateway: an adapter a worker reports as loaded
 * at run time (through another gateway, before this gateway started, or at the worker
 * itself) is taken up as if it had been loaded here, and one that a worker's same process
 * stops reporting was unloaded by someone and is no longer replayed. So several gateways, or
 * a restarted one, agree without talking to each other. An unloaded name is remembered for
 * a while (tombstoneMs), so that a worker that missed the unload has it unloaded when it
 * reports it again rather than spreading it back to the others.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { HealthMonitor } from '../health-monitor.js';
import type { WorkerEndpoint } from '../types.js';
import type { WorkerReport } from '../worker-report.js';
import { requestOnce, type ProbeResult } from '../ready-probe.js';
import type { UpstreamPool } from './upstream-http.js';
import { workerError } from './upstream.js';

export interface LoraSyncOptions {
  /** First pause before calling a worker again about an adapter it refused or failed; doubles per failure (default 2000 ms). */
  retryBaseMs?: number;
  /** Longest such pause (default 300000 ms). */
  retryMaxMs?: number;
  /** How long an unloaded name is unloaded from workers that report it again (default 600000 ms). */
  tombstoneMs?: number;
  /** One call to a worker (default 60000 ms; a load reads the adapter's files). */
  callTimeoutMs?: number;
}

/** One worker's answer to a load or unload: done, refused by the worker (its answer), or no answer. */
export type CallOutcome =
  /** `changed`: false where the worker already had the adapter (load) or had none of that name (unload). */
  { kind: 'ok'; changed: boolean } | { kind: 'refused'; status: number; body: string } | { kind: 'failed'; error: string };

type Action = 'load' | 'unload';

interface WorkerSync {
  instance: string | null;
  /**
   * Adapters this process is known to have: listed by its last report, or loaded by a call
   * of ours since. One that a later report of the same process leaves out was unloaded.
   */
  had: Set<string>;
  /**
   * When the last of our calls to it succeeded: a report of a probe sent before that may
   * predate the call (a load it does not list yet), and decides nothing.
   */
  lastCallMs: number;
  /** Calls in flight, by `${action}:${name}`: a second one for the same waits on the first. */
  inFlight: Map<string, Promise<CallOutcome>>;
  /** Refused or failed background calls, by `${action}:${name}`: not repeated before untilMs. */
  backoff: Map<string, { failures: number; untilMs: number; error: string }>;
}

export interface LoraSyncSnapshot {
  /** Adapters every worker should serve: name -> folder. */
  adapters: Record<string, string>;
  /** Names unloaded recently, unloaded again from any worker that reports them. */
  unloaded: string[];
  /** Per worker, the calls that failed and when they are tried again. */
  pending: Record<string, { call: string; failures: number; retryInMs: number; error: string }[]>;
}

export interface LoraSyncDeps {
  health: HealthMonitor;
  pool: UpstreamPool;
  /** The gateway's credentials at the workers (cluster secret, worker API key). */
  credentials: Record<string, string>;
  log?: FastifyBaseLogger;
  onCall?: (action: Action, outcome: CallOutcome['kind']) => void;
}

export class LoraSync {
  private readonly desired = new Map<string, string>();
  private readonly tombstones = new Map<string, number>();
  private readonly workers = new Map<string, WorkerSync>();
  private readonly o: Required<LoraSyncOptions>;
  private readonly unsubscribe: () => void;
  private reportsSincePrune = 0;

  constructor(
    private readonly deps: LoraSyncDeps,
    options: LoraSyncOptions = {},
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.o = {
      retryBaseMs: options.retryBaseMs ?? 2000,
      retryMaxMs: options.retryMaxMs ?? 300_000,
      tombstoneMs: options.tombstoneMs ?? 600_000,
      callTimeoutMs: options.callTimeoutMs ?? 60_000,
    };
    this.unsubscribe = deps.health.onReport((worker, report, sentMs) => this.observe(worker, report, sentMs));
  }

  stop(): void {
    this.unsubscribe();
  }

  /** Whether the gateway holds `name` as an adapter every worker should serve. */
  has(name: string): boolean {
    return this.desired.has(name);
  }

  /**
   * The workers whose present process is known to serve `name` (its last reports, and the
   * gateway's calls since), or null when the gateway does not keep `name`.
   */
  holders(name: string): ReadonlySet<string> | null {
    if (!this.desired.has(name)) return null;
    const ids = new Set<string>();
    for (const [id, w] of this.workers) if (w.had.has(name)) ids.add(id);
    return ids;
  }

  /**
   * Loads `name` from `path` on every healthy worker. `ok` lists those that serve it now;
   * when none does, `refusal` is the first worker's own 4xx answer (a bad folder is bad on
   * every worker) and nothing is kept. Workers that failed are given it later.
   */
  async load(
    name: string,
    path: string,
  ): Promise<{ ok: string[]; of: number; refusal: { status: number; body: string } | null; errors: string[] }> {
    const targets = this.deps.health.healthy();
    // Not "recently unloaded" from now on: a probe of a worker that has loaded it already
    // would otherwise have it unloaded again while the others are still loading it.
    const tombstone = this.tombstones.get(name);
    this.tombstones.delete(name);
    const { ok, refusal, errors } = await this.broadcast(targets, 'load', name, path);
    if (ok.length === 0 && tombstone !== undefined) this.tombstones.set(name, tombstone);
    if (ok.length > 0) {
      this.desired.set(name, path);
      this.deps.log?.info({ lora: name, path, workers: ok.length, of: targets.length }, 'LoRA adapter loaded across the cluster');
    }
    return { ok, of: targets.length, refusal: ok.length > 0 ? null : refusal, errors };
  }

  /**
   * Unloads `name` from every worker that may take requests or is draining, and stops giving
   * it to any. A worker that had no such adapter counts as done. When no worker did it and
   * one refused (say, the base model's name, or a worker without the run-time routes), that
   * answer is returned and the adapter stays as it was.
   */
  async unload(
    name: string,
  ): Promise<{ ok: string[]; removed: number; refusal: { status: number; body: string } | null; errors: string[] }> {
    const path = this.desired.get(name);
    this.desired.delete(name);
    this.tombstones.set(name, this.nowMs() + this.o.tombstoneMs);
    const targets = this.deps.health.snapshot().filter((w) => w.state !== 'unhealthy');
    const { ok, changed: removed, refusal, errors } = await this.broadcast(targets, 'unload', name);
    if (ok.length === 0 && refusal !== null) {
      this.tombstones.delete(name);
      if (path !== undefined) this.desired.set(name, path);
      return { ok, removed, refusal, errors };
    }
    this.deps.log?.info({ lora: name, workers: removed, of: targets.length }, 'LoRA adapter unloaded across the cluster');
    return { ok, removed, refusal: null, errors };
  }

  /**
   * One call to each of `targets`: those that did it (`changed`: of them, how many changed
   * anything), the first refusal, and each failure as "worker: why".
   */
  private async broadcast(
    targets: readonly WorkerEndpoint[],
    action: Action,
    name: string,
    path?: string,
  ): Promise<{ ok: string[]; changed: number; refusal: { status: number; body: string } | null; errors: string[] }> {
    const outcomes = await Promise.all(targets.map((w) => this.call(w, action, name, path)));
    return {
      ok: targets.filter((_, i) => outcomes[i]!.kind === 'ok').map((w) => w.id),
      changed: outcomes.filter((o) => o.kind === 'ok' && o.changed).length,
      refusal: outcomes.find((o): o is Extract<CallOutcome, { kind: 'refused' }> => o.kind === 'refused') ?? null,
      errors: outcomes.flatMap((o, i) => (o.kind === 'ok' ? [] : [`${targets[i]!.id}: ${describe(o)}`])),
    };
  }

  /** Whether any worker (not unhealthy) lists `name` among its adapters. */
  servedAnywhere(name: string): boolean {
    return this.deps.health.snapshot().some((w) => w.state !== 'unhealthy' && w.adapters?.includes(name) === true);
  }

  snapshot(): LoraSyncSnapshot {
    const now = this.nowMs();
    this.expireTombstones(now);
    const pending: LoraSyncSnapshot['pending'] = {};
    for (const [id, w] of this.workers) {
      const calls = [...w.backoff]
        .filter(([call]) => this.stillWanted(call))
        .map(([call, b]) => ({ call, failures: b.failures, retryInMs: Math.max(0, Math.round(b.untilMs - now)), error: b.error }));
      if (calls.length > 0) pending[id] = calls;
    }
    return { adapters: Object.fromEntries(this.desired), unloaded: [...this.tombstones.keys()], pending };
  }

  /**
   * A ready probe's report (the probe sent at `sentMs`, on this object's clock): take up,
   * forget, unload and load what it calls for (the calls run in the background).
   */
  observe(worker: WorkerEndpoint, report: WorkerReport, sentMs: number): void {
    const now = this.nowMs();
    this.expireTombstones(now);
    this.forgetDeparted();
    let w = this.workers.get(worker.id);
    const sameProcess = w !== undefined && report.instance !== null && w.instance === report.instance;
    if (w === undefined) w = this.workerSync(worker.id);
    else if (!sameProcess) {
      // a new process: it has none of the old one's run-time adapters, and what the old one refused says nothing about it
      w.backoff.clear();
      w.had.clear();
    } else if (sentMs < w.lastCallMs) return;
    for (const call of w.backoff.keys()) if (!this.stillWanted(call)) w.backoff.delete(call);
    const listed = new Set([...(report.adapters ?? []), ...(report.runtimeAdapters?.keys() ?? [])]);
    // Known to this same process and gone now, with no load of ours on the way: unloaded by
    // someone else (another gateway, a call to the worker), so no longer given to workers.
    for (const name of w.had) {
      if (!listed.has(name) && this.desired.has(name) && !w.inFlight.has(`load:${name}`)) {
        this.desired.delete(name);
        this.tombstones.set(name, now + this.o.tombstoneMs);
        this.deps.log?.info({ lora: name, worker: worker.id }, 'LoRA adapter unloaded outside this gateway; no longer given to workers');
      }
    }
    w.instance = report.instance;
    w.had = listed;
    for (const [name, path] of report.runtimeAdapters ?? []) {
      if (this.tombstones.has(name)) this.retryable(worker, w, 'unload', name, now);
      else if (!this.desired.has(name)) this.desired.set(name, path);
    }
    // A worker that does not list its adapters cannot be told apart from one that has them all.
    if (report.adapters === null) return;
    for (const [name, path] of this.desired) if (!report.adapters.has(name)) this.retryable(worker, w, 'load', name, now, path);
  }

  /**
   * Drops the records of workers that left the registry (their calls in flight finish on
   * their own), once per as many reports as there are records: O(1) per probe.
   */
  private forgetDeparted(): void {
    if (++this.reportsSincePrune < this.workers.size) return;
    this.reportsSincePrune = 0;
    for (const id of this.workers.keys()) if (this.deps.health.state(id) === undefined) this.workers.delete(id);
  }

  /** A background call unless one is in flight or its pause after a failure has not ended. */
  private retryable(worker: WorkerEndpoint, w: WorkerSync, action: Action, name: string, now: number, path?: string): void {
    const key = `${action}:${name}`;
    if (w.inFlight.has(key) || (w.backoff.get(key)?.untilMs ?? 0) > now) return;
    void this.call(worker, action, name, path).then((outcome) => {
      if (outcome.kind === 'ok') return void w.backoff.delete(key);
      const failures = (w.backoff.get(key)?.failures ?? 0) + 1;
      const pauseMs = Math.min(this.o.retryMaxMs, this.o.retryBaseMs * 2 ** (failures - 1));
      w.backoff.set(key, { failures, untilMs: this.nowMs() + pauseMs, error: describe(outcome) });
      this.deps.log?.warn(
        { lora: name, worker: worker.id, action, error: describe(outcome), retryInMs: pauseMs },
        'LoRA adapter call to a worker failed',
      );
    });
  }

  /** Calls the worker's load or unload route once (joining a call already in flight) and records the outcome. */
  private call(worker: WorkerEndpoint, action: Action, name: string, path?: string): Promise<CallOutcome> {
    const w = this.workerSync(worker.id);
    const key = `${action}:${name}`;
    const running = w.inFlight.get(key);
    if (running) return running;
    const body = JSON.stringify(action === 'load' ? { lora_name: name, lora_path: path } : { lora_name: name });
    const request = { method: 'POST' as const, headers: { ...this.deps.credentials, 'content-type': 'application/json' }, body };
    const done = requestOnce(this.deps.pool, `${worker.url}/v1/${action}_lora_adapter`, request, this.o.callTimeoutMs).then((raw) => {
      const outcome = classify(action, raw);
      w.inFlight.delete(key);
      if (outcome.kind === 'ok') {
        w.lastCallMs = this.nowMs();
        if (action === 'load') w.had.add(name);
        else w.had.delete(name);
      }
      this.deps.onCall?.(action, outcome.kind);
      return outcome;
    });
    w.inFlight.set(key, done);
    return done;
  }

  private workerSync(id: string): WorkerSync {
    let w = this.workers.get(id);
    if (w === undefined) {
      w = { instance: null, had: new Set(), lastCallMs: -Infinity, inFlight: new Map(), backoff: new Map() };
      this.workers.set(id, w);
    }
    return w;
  }

  /** Whether a call (`${action}:${name}`) is still called for: a load of a kept adapter, an unload of a recently unloaded one. */
  private stillWanted(call: string): boolean {
    const colon = call.indexOf(':');
    const name = call.slice(colon + 1);
    return call.slice(0, colon) === 'load' ? this.desired.has(name) : this.tombstones.has(name);
  }

  private expireTombstones(now: number): void {
    for (const [name, untilMs] of this.tombstones) if (untilMs <= now) this.tombstones.delete(name);
  }
}

function classify(action: Action, raw: ProbeResult): CallOutcome {
  if ('error' in raw) return { kind: 'failed', error: raw.error };
  if (raw.status >= 200 && raw.status < 300) return { kind: 'ok', changed: true };
  // it has the adapter already (a load through another gateway, or ours racing a probe's)
  if (action === 'load' && raw.status === 400 && raw.body.includes('is already loaded')) return { kind: 'ok', changed: false };
  // it has no adapter of that name: nothing to unload
  if (action === 'unload' && raw.status === 404 && workerError(raw.body).code === 'model_not_found') return { kind: 'ok', changed: false };
  if (raw.status >= 400 && raw.status < 500) return { kind: 'refused', status: raw.status, body: raw.body };
  return { kind: 'failed', error: `HTTP ${raw.status}` };
}

function describe(o: CallOutcome): string {
  if (o.kind === 'ok') return 'ok';
  if (o.kind === 'failed') return o.error;
  const { message } = workerError(o.body);
  return `HTTP ${o.status}${message ? `: ${message}` : ''}`;
}
