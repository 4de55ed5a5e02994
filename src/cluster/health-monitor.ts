import { AutoGlmError } from '../errors.js';
import { fetchReadyProbe, type ReadyProbe } from './ready-probe.js';
import type { WorkerEndpoint, WorkerState } from './types.js';
import { parseWorkerReport, reportServes, type WorkerReport } from './worker-report.js';

export interface HealthMonitorOptions {
  /** Active /ready probe period per worker (default 250 ms; sub-second is fine). */
  probeIntervalMs?: number;
  /** A probe slower than this counts as failed (default 500 ms). */
  probeTimeoutMs?: number;
  /** Consecutive failed probes before a healthy worker is marked unhealthy (default 2). */
  unhealthyThreshold?: number;
  /** Consecutive failed requests (5xx, reset, timeout) before passive ejection (default 3). */
  passiveFailureThreshold?: number;
  /** First ejection's cool-down; each repeat doubles it (default 1000 ms). */
  baseEjectionMs?: number;
  maxEjectionMs?: number;
  /** After this long healthy, the ejection count (and so the next cool-down) resets (default 60 s). */
  ejectionDecayMs?: number;
}

/** The ejection cool-downs when HealthMonitorOptions leaves them out. */
export const DEFAULT_BASE_EJECTION_MS = 1000;
export const DEFAULT_MAX_EJECTION_MS = 30_000;

/** How a real request to a worker failed (passive outlier detection). */
export type FailureKind = 'connect' | 'timeout' | 'reset' | 'status';

export interface WorkerHealth {
  id: string;
  url: string;
  state: WorkerState;
  /** Passive ejections so far (decays after a healthy stretch). */
  ejections: number;
  /** Remaining cool-down, 0 when not ejected. */
  ejectedForMs: number;
  lastProbe: string | null;
  /** The LoRA adapters its last ready probe listed (null: it does not say). */
  adapters: string[] | null;
}

interface Entry {
  endpoint: WorkerEndpoint;
  state: WorkerState;
  /** Seen ready at least once; a worker that never answered stays out of rotation. */
  everReady: boolean;
  probeFailures: number;
  passiveFailures: number;
  ejections: number;
  ejectedUntilMs: number;
  /** Bumped on every ejection: a probe that was already in flight then must not undo it. */
  ejectionEpoch: number;
  healthySinceMs: number;
  probing: boolean;
  lastProbe: string | null;
  /** What the last ready probe's body said, and that body (parsed again only when it changes). */
  report: WorkerReport | null;
  reportBody: string;
  /** When the last ready probe answered (the report's age, for a worker that is down since). */
  reportMs: number;
  removed: boolean;
}

/**
 * Tracks each worker's state from active /ready probes and from real traffic.
 * - Probes: 200 -> healthy; 503 server_draining -> draining; failure -> unhealthy after
 *   `unhealthyThreshold` in a row (at once for a worker never seen ready).
 * - Passive: a refused connection ejects at once (the process is gone); other failures
 *   eject after `passiveFailureThreshold` in a row. An ejected worker gets no probes until
 *   its cool-down ends (doubling on each repeat ejection), then one probe decides: ready
 *   closes the circuit (half-open -> healthy), anything else keeps it unhealthy and probing
 *   continues at the normal pace, so a restarted worker is back within one probe period.
 */
export class HealthMonitor {
  private readonly entries = new Map<string, Entry>();
  /**
   * Ejection counts of workers that left the registry, by URL, kept for ejectionDecayMs: a
   * crash-looping worker leaves (its heartbeat TTL or lease lapses while it restarts) and
   * comes back, maybe under a new id (a new etcd key), and must not come back with a clean
   * record, or its cool-down never grows.
   */
  private readonly departed = new Map<string, { ejections: number; leftMs: number; report: WorkerReport | null; reportMs: number }>();
  private timer: NodeJS.Timeout | null = null;
  private readonly o: Required<HealthMonitorOptions>;
  private readonly stateListeners = new Set<(id: string, state: WorkerState, url: string) => void>();
  private readonly ejectListeners = new Set<(id: string, cooldownMs: number) => void>();
  private readonly reportListeners = new Set<(worker: WorkerEndpoint, report: WorkerReport, sentMs: number) => void>();
  /** Whether any tracked worker has said what it serves: until one does, routing by model costs nothing. */
  private namesListed = false;

  constructor(
    options: HealthMonitorOptions = {},
    private readonly nowMs: () => number = () => performance.now(),
    private readonly probeReady: ReadyProbe = fetchReadyProbe,
  ) {
    this.o = {
      probeIntervalMs: options.probeIntervalMs ?? 250,
      probeTimeoutMs: options.probeTimeoutMs ?? 500,
      unhealthyThreshold: options.unhealthyThreshold ?? 2,
      passiveFailureThreshold: options.passiveFailureThreshold ?? 3,
      baseEjectionMs: options.baseEjectionMs ?? DEFAULT_BASE_EJECTION_MS,
      maxEjectionMs: options.maxEjectionMs ?? DEFAULT_MAX_EJECTION_MS,
      ejectionDecayMs: options.ejectionDecayMs ?? 60_000,
    };
    // Every cool-down is min(max, base x 2^n): a base above the max would be cut to the max
    // from the first ejection on, and the setting silently ignored.
    if (this.o.baseEjectionMs > this.o.maxEjectionMs) {
      const maxFrom = options.maxEjectionMs === undefined ? ' (the default)' : '';
      throw new AutoGlmError(
        'invalid_request',
        `baseEjectionMs ${this.o.baseEjectionMs} is above maxEjectionMs ${this.o.maxEjectionMs}${maxFrom}: the first cool-down cannot be longer than the longest one.`,
        { param: 'baseEjectionMs' },
      );
    }
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.probeAll(), this.o.probeIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Returns an unsubscribe function. */
  onStateChange(listener: (id: string, state: WorkerState, url: string) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  onEjection(listener: (id: string, cooldownMs: number) => void): void {
    this.ejectListeners.add(listener);
  }

  /**
   * Called after every ready probe of a healthy worker with what its body said and when the
   * probe was sent (the monitor's clock): the worker answered it at some time after that.
   * Returns an unsubscribe function.
   */
  onReport(listener: (worker: WorkerEndpoint, report: WorkerReport, sentMs: number) => void): () => void {
    this.reportListeners.add(listener);
    return () => this.reportListeners.delete(listener);
  }

  /** Aligns the tracked set with the registry's; new workers are probed at once. */
  sync(workers: readonly WorkerEndpoint[]): void {
    const now = this.nowMs();
    for (const [url, d] of this.departed) if (now - d.leftMs > this.o.ejectionDecayMs) this.departed.delete(url);
    const ids = new Set(workers.map((w) => w.id));
    for (const [id, e] of this.entries) {
      if (!ids.has(id)) {
        e.removed = true;
        this.entries.delete(id);
        // its report too: a request for a model only it served is "retry later" for a while
        // (a crashed worker's TTL ran out before it restarted), not a 404 from the others
        if (e.ejections > 0 || e.report !== null)
          this.departed.set(e.endpoint.url, { ejections: e.ejections, leftMs: now, report: e.report, reportMs: e.reportMs });
      }
    }
    for (const w of workers) {
      const known = this.entries.get(w.id);
      if (known && known.endpoint.url === w.url) continue;
      // Moved to a new URL: a probe of the old one still in flight must not speak for it.
      if (known) known.removed = true;
      const past = this.departed.get(w.url);
      this.departed.delete(w.url);
      const e: Entry = {
        endpoint: w,
        state: 'unhealthy',
        everReady: false,
        probeFailures: 0,
        passiveFailures: 0,
        ejections: known?.ejections ?? past?.ejections ?? 0,
        ejectedUntilMs: 0,
        ejectionEpoch: 0,
        healthySinceMs: 0,
        probing: false,
        lastProbe: null,
        report: null,
        reportBody: '',
        reportMs: 0,
        removed: false,
      };
      this.entries.set(w.id, e);
      void this.probe(e);
    }
  }

  state(id: string): WorkerState | undefined {
    return this.entries.get(id)?.state;
  }

  /** Workers that may take new requests. */
  healthy(): WorkerEndpoint[] {
    return [...this.entries.values()].filter((e) => e.state === 'healthy').map((e) => e.endpoint);
  }

  /**
   * Healthy workers for a request naming `model`. Where some healthy worker serves that name
   * (its base model, an alias or a LoRA adapter, by its last ready probe): only those, and
   * any whose probes do not say what they serve. A worker serving another model, or lacking
   * the adapter (one that restarted and lost a run-time adapter, or was never given it),
   * would answer 404 model_not_found where another worker could have served the request.
   * When only workers that are down now, or left the registry, served it (by a report
   * within ejectionDecayMs): none, since the model exists and "no healthy worker, retry" is
   * the true answer, not a 404. A name that no worker serves goes to any healthy worker,
   * whose 404 says what it serves.
   */
  healthyFor(model: string | undefined): WorkerEndpoint[] {
    const healthy = [...this.entries.values()].filter((e) => e.state === 'healthy');
    if (model === undefined || !this.namesListed) return healthy.map((e) => e.endpoint);
    if (healthy.some((e) => reportServes(e.report, model) === true))
      return healthy.filter((e) => reportServes(e.report, model) !== false).map((e) => e.endpoint);
    const now = this.nowMs();
    const servedLately = (e: { report: WorkerReport | null; reportMs: number }): boolean =>
      reportServes(e.report, model) === true && now - e.reportMs < this.o.ejectionDecayMs;
    const servedByDownWorker =
      [...this.entries.values()].some((e) => e.state !== 'healthy' && servedLately(e)) || [...this.departed.values()].some(servedLately);
    return servedByDownWorker ? [] : healthy.map((e) => e.endpoint);
  }

  /**
   * The base model (its /ready `model`) of the workers that serve `name`, which may be an
   * alias or a LoRA adapter; healthy workers are asked first. null when no report names it:
   * a label for per-model metrics that a client's made-up names cannot multiply.
   */
  baseModelOf(name: string | undefined): string | null {
    if (name === undefined || !this.namesListed) return null;
    let fallback: string | null = null;
    for (const e of this.entries.values()) {
      if (reportServes(e.report, name) !== true) continue;
      if (e.state === 'healthy') return e.report!.model;
      fallback ??= e.report!.model;
    }
    return fallback;
  }

  snapshot(): WorkerHealth[] {
    const now = this.nowMs();
    return [...this.entries.values()].map((e) => ({
      id: e.endpoint.id,
      url: e.endpoint.url,
      state: e.state,
      ejections: e.ejections,
      ejectedForMs: Math.max(0, Math.round(e.ejectedUntilMs - now)),
      lastProbe: e.lastProbe,
      adapters: e.report?.adapters ? [...e.report.adapters] : null,
    }));
  }

  reportSuccess(id: string): void {
    const e = this.entries.get(id);
    if (e) e.passiveFailures = 0;
  }

  reportFailure(id: string, kind: FailureKind): void {
    const e = this.entries.get(id);
    if (!e || e.ejectedUntilMs > this.nowMs()) return;
    e.passiveFailures++;
    if (kind === 'connect' || e.passiveFailures >= this.o.passiveFailureThreshold) this.eject(e);
  }

  /** Probes every worker that is due. Public so tests can step without timers. */
  probeAll(): void {
    for (const e of this.entries.values()) void this.probe(e);
  }

  private eject(e: Entry): void {
    const now = this.nowMs();
    if (e.state === 'healthy' && now - e.healthySinceMs > this.o.ejectionDecayMs) e.ejections = 0;
    e.ejections++;
    const cooldownMs = Math.min(this.o.maxEjectionMs, this.o.baseEjectionMs * 2 ** (e.ejections - 1));
    e.ejectedUntilMs = now + cooldownMs;
    e.ejectionEpoch++;
    e.passiveFailures = 0;
    this.setState(e, 'unhealthy');
    for (const l of this.ejectListeners) l(e.endpoint.id, cooldownMs);
  }

  private async probe(e: Entry): Promise<void> {
    if (e.probing || e.removed || e.ejectedUntilMs > this.nowMs()) return;
    e.probing = true;
    const epoch = e.ejectionEpoch;
    let outcome: 'ready' | 'draining' | 'failed';
    let body = '';
    const sentMs = this.nowMs();
    try {
      const r = await this.probeReady(`${e.endpoint.url}/ready`, this.o.probeTimeoutMs);
      if ('error' in r) {
        outcome = 'failed';
        e.lastProbe = r.error;
      } else {
        const ok = r.status >= 200 && r.status < 300;
        outcome = ok ? 'ready' : r.status === 503 && r.body.includes('server_draining') ? 'draining' : 'failed';
        e.lastProbe = `HTTP ${r.status}`;
        body = r.body;
      }
    } finally {
      e.probing = false;
    }
    // Ejected while this probe was on its way: its "ready" predates the failures that ejected it.
    if (e.removed || e.ejectionEpoch !== epoch) return;
    if (outcome === 'ready') {
      e.probeFailures = 0;
      e.everReady = true;
      e.ejectedUntilMs = 0;
      if (e.state !== 'healthy') e.healthySinceMs = this.nowMs();
      if (e.report === null || body !== e.reportBody) {
        e.report = parseWorkerReport(body);
        e.reportBody = body;
        if (e.report.model !== null) this.namesListed = true;
      }
      e.reportMs = this.nowMs();
      this.setState(e, 'healthy');
      for (const l of this.reportListeners) l(e.endpoint, e.report, sentMs);
    } else if (outcome === 'draining') {
      e.probeFailures = 0;
      this.setState(e, 'draining');
    } else {
      e.probeFailures++;
      if (!e.everReady || e.state !== 'healthy' || e.probeFailures >= this.o.unhealthyThreshold) this.setState(e, 'unhealthy');
    }
  }

  private setState(e: Entry, state: WorkerState): void {
    if (e.state === state) return;
    e.state = state;
    for (const l of this.stateListeners) l(e.endpoint.id, state, e.endpoint.url);
  }
}
