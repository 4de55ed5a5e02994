import { AutoGlmError } from '../../errors.js';
import { normalizeUrl, parseWorkerUrl, requireWorkerUrl } from '../types.js';
import { RegistryBase } from './registry.js';

export interface HeartbeatRegistryOptions {
  /** A worker not heard from for this long is dropped (default 3 s). */
  defaultTtlMs?: number;
  /** Largest TTL a worker may ask for (default 60 s). */
  maxTtlMs?: number;
  /** How often expired entries are swept (default 200 ms). */
  sweepIntervalMs?: number;
  /**
   * Most workers registered at once (default 4096): a further new id is refused (429)
   * until one leaves. Registration needs the cluster secret, but a misconfigured fleet
   * (ids that change on every heartbeat) or a leaked secret must not grow the gateway's
   * view, probes and metrics without bound. Known workers always renew.
   */
  maxWorkers?: number;
}

/**
 * The default backend: workers POST to the gateway (`/cluster/register`) every heartbeat
 * and are forgotten when their TTL passes without one. Soft state: a restarted gateway
 * rebuilds its view within one heartbeat.
 */
export class HeartbeatRegistry extends RegistryBase {
  readonly kind = 'heartbeat';
  private readonly expiresAtMs = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private readonly defaultTtlMs: number;
  private readonly maxTtlMs: number;
  private readonly sweepIntervalMs: number;
  private readonly maxWorkers: number;

  constructor(
    options: HeartbeatRegistryOptions = {},
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    super();
    this.defaultTtlMs = options.defaultTtlMs ?? 3000;
    this.maxTtlMs = options.maxTtlMs ?? 60_000;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 200;
    this.maxWorkers = options.maxWorkers ?? 4096;
  }

  async start(): Promise<void> {
    this.timer ??= setInterval(() => this.sweep(), this.sweepIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A registration or heartbeat (the same call). Returns the TTL granted. */
  heartbeat(body: unknown): { id: string; ttlMs: number } {
    const b = (body ?? {}) as { url?: unknown; id?: unknown; ttlMs?: unknown };
    const url = requireWorkerUrl(b.url, 'url', 'url');
    const id = typeof b.id === 'string' && b.id !== '' ? b.id : url;
    const ttlMs =
      typeof b.ttlMs === 'number' && Number.isFinite(b.ttlMs) && b.ttlMs > 0 ? Math.min(b.ttlMs, this.maxTtlMs) : this.defaultTtlMs;
    if (!this.expiresAtMs.has(id) && this.expiresAtMs.size >= this.maxWorkers) {
      this.sweep(); // expired entries make room first
      if (this.expiresAtMs.size >= this.maxWorkers) {
        throw new AutoGlmError(
          'queue_full',
          `The gateway's registry holds its maximum of ${this.maxWorkers} workers (--max-workers); try again when one has left.`,
        );
      }
    }
    this.expiresAtMs.set(id, this.nowMs() + ttlMs);
    this.upsert({ id, url });
    return { id, ttlMs };
  }

  deregister(body: unknown): boolean {
    const b = (body ?? {}) as { url?: unknown; id?: unknown };
    const id =
      typeof b.id === 'string' && b.id !== ''
        ? b.id
        : typeof b.url === 'string'
          ? (parseWorkerUrl(b.url) ?? normalizeUrl(b.url))
          : undefined;
    if (id === undefined) throw new AutoGlmError('invalid_request', 'id or url is required.', { param: 'id' });
    const known = this.expiresAtMs.delete(id);
    this.remove(id);
    return known;
  }

  /** Drops every worker whose TTL has passed. Public so tests can drive time. */
  sweep(): void {
    const now = this.nowMs();
    for (const [id, at] of this.expiresAtMs) {
      if (at <= now) {
        this.expiresAtMs.delete(id);
        this.remove(id);
      }
    }
  }
}
