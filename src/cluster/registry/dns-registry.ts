import { Resolver } from 'node:dns/promises';
import type { WorkerEndpoint } from '../types.js';
import { RegistryBase } from './registry.js';

export interface DnsRegistryOptions {
  /** The name to resolve: a headless Service (`autoglm-workers.default.svc.cluster.local`) or an SRV name (`_http._tcp.workers.service.consul`). */
  name: string;
  /** A: every address at `port`. SRV: each record's target and port (default A). */
  recordType?: 'A' | 'SRV';
  /** Worker port for A records (default 8000). */
  port?: number;
  scheme?: 'http' | 'https';
  /** DNS servers as `ip` or `ip:port` (default: the system's). */
  servers?: string[];
  /** How often the name is re-resolved (default 1000 ms). */
  refreshMs?: number;
  /** Per-query timeout (default 1000 ms). */
  timeoutMs?: number;
}

/** Answers meaning "this name has no workers" rather than "DNS is unreachable right now". */
const EMPTY_ANSWER = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN']);

/**
 * Discovery by DNS, re-resolved periodically. A transient DNS failure keeps the last view
 * (dropping every worker because the resolver hiccuped would turn a blip into an outage);
 * an authoritative "no such name" empties it.
 */
export class DnsRegistry extends RegistryBase {
  readonly kind = 'dns';
  private readonly resolver: Resolver;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** The last resolution error, for /cluster/workers and logs. */
  lastError: string | null = null;
  /** SRV: each target's addresses at the last resolution. */
  private lastTargets = new Map<string, string[]>();

  constructor(private readonly options: DnsRegistryOptions) {
    super();
    this.resolver = new Resolver({ timeout: options.timeoutMs ?? 1000, tries: 1 });
    if (options.servers && options.servers.length > 0) this.resolver.setServers(options.servers);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.refresh();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.resolver.cancel();
  }

  /** Resolves once now. Public so callers (and tests) can force a refresh. */
  async refresh(): Promise<void> {
    try {
      // Cleared first: an SRV target that failed (and kept its last addresses) says so here.
      this.lastError = null;
      const workers = await this.resolve();
      // stop() cancels the queries in flight, but an SRV refresh whose target lookups were
      // cancelled still completes: after stop() the view must not change (nor wake the gateway).
      if (this.stopped) return;
      this.replaceAll(workers);
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      this.lastError = `${code} ${(e as Error).message}`.trim();
      if (EMPTY_ANSWER.has(code) && !this.stopped) this.replaceAll([]);
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.refresh().finally(() => this.schedule());
    }, this.options.refreshMs ?? 1000);
    this.timer.unref();
  }

  /**
   * An SRV target's addresses: none when the name authoritatively has none, its last known
   * ones when the lookup fails otherwise (the target's own DNS server may be down: the same
   * transient failure that keeps the whole view when it hits the SRV name).
   */
  private async resolveTarget(name: string): Promise<string[]> {
    try {
      return await this.resolver.resolve4(name);
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      if (EMPTY_ANSWER.has(code)) return [];
      this.lastError = `${name}: ${code} ${(e as Error).message}`.trim();
      return this.lastTargets.get(name) ?? [];
    }
  }

  private async resolve(): Promise<WorkerEndpoint[]> {
    const scheme = this.options.scheme ?? 'http';
    const endpoint = (host: string, port: number): WorkerEndpoint => {
      const h = host.includes(':') ? `[${host}]` : host;
      return { id: `${h}:${port}`, url: `${scheme}://${h}:${port}` };
    };
    if ((this.options.recordType ?? 'A') === 'A') {
      const addresses = await this.resolver.resolve4(this.options.name);
      return addresses.map((a) => endpoint(a, this.options.port ?? 8000));
    }
    const records = await this.resolver.resolveSrv(this.options.name);
    // Targets are host names, resolved through the same servers (an IP literal needs no
    // lookup), all at once: one after another, each dead target's timeout added up.
    const names = [...new Set(records.map((r) => r.name))];
    const resolved = await Promise.all(names.map((n) => (/^[\d.]+$/.test(n) ? [n] : this.resolveTarget(n))));
    const targets = new Map(names.map((n, i) => [n, resolved[i]!]));
    const out: WorkerEndpoint[] = [];
    for (const r of records) for (const a of targets.get(r.name)!) out.push(endpoint(a, r.port));
    this.lastTargets = targets;
    return out;
  }
}
