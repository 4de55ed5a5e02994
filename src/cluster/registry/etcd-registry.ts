import { parseWorkerUrl, type WorkerEndpoint } from '../types.js';
import { EtcdClient, type EtcdKv } from './etcd-client.js';
import { WatchedRegistry } from './watched-registry.js';

export const DEFAULT_ETCD_PREFIX = '/autoglm/workers/';

export interface EtcdRegistryOptions {
  /** etcd client URL, e.g. http://127.0.0.1:2379. */
  url: string;
  /** Key prefix workers register under (default /autoglm/workers/). */
  prefix?: string;
  /** Wait before re-listing after the watch stream breaks (default 500 ms). */
  retryMs?: number;
  /**
   * Re-list the prefix this often (default 10000 ms; 0 = never) and, where the listing
   * shows changes the watch has not delivered, restart the watch. A watch whose connection
   * went silent (half-open after a network partition) never errors: without this the view
   * would stop changing while workers come and go.
   */
  resyncMs?: number;
}

/** The value a worker stores under its key. */
export interface EtcdWorkerValue {
  url: string;
}

/**
 * Workers hold lease-backed keys under a prefix; every gateway lists the prefix and then
 * watches it, so all gateways on one etcd share one view and a worker whose lease lapses
 * (process gone) disappears everywhere at once.
 */
export class EtcdRegistry extends WatchedRegistry {
  readonly kind = 'etcd';
  protected readonly watchName = 'the etcd watch';
  private readonly client: EtcdClient;
  private readonly prefix: string;
  private byKey = new Map<string, WorkerEndpoint>();
  /** The last key under the prefix whose value was not a worker entry (left out of the view). */
  lastSkipped: string | null = null;

  constructor(private readonly options: EtcdRegistryOptions) {
    super();
    this.client = new EtcdClient(options.url);
    this.prefix = options.prefix ?? DEFAULT_ETCD_PREFIX;
  }

  async start(): Promise<void> {
    this.abort = new AbortController();
    const first = await this.list0().catch((e: unknown) => {
      this.lastError = (e as Error).message;
      return 0;
    });
    this.runWatchLoop(this.watchLoop(first, this.abort.signal), this.options.resyncMs ?? 10_000);
  }

  /** Lists the prefix into the view; returns the revision to watch from. */
  private async list0(): Promise<number> {
    const { kvs, revision } = await this.client.rangePrefix(this.prefix);
    // stop() aborts the watch, not a listing in flight: after stop() the view stays as it was.
    if (this.abort?.signal.aborted) return revision + 1;
    this.byKey = this.parseAll(kvs);
    this.replaceAll([...this.byKey.values()]);
    this.lastError = null;
    return revision + 1;
  }

  protected async listView(): Promise<Map<string, WorkerEndpoint>> {
    return this.parseAll((await this.client.rangePrefix(this.prefix)).kvs);
  }

  protected watchedView(): Map<string, WorkerEndpoint> {
    return this.byKey;
  }

  private async watchLoop(fromRevision: number, signal: AbortSignal): Promise<void> {
    let revision = fromRevision;
    while (!signal.aborted) {
      const attempt = new AbortController();
      const stopAttempt = (): void => attempt.abort();
      signal.addEventListener('abort', stopAttempt, { once: true });
      this.watchAttempt = attempt;
      try {
        if (revision === 0) revision = await this.list0();
        await this.client.watchPrefix(
          this.prefix,
          revision,
          (events) => {
            for (const e of events) {
              // A key rewritten to something that is not a worker entry stops naming a worker,
              // as a fresh listing would leave it out.
              const w = e.type === 'DELETE' ? null : this.parse(e.key, e.value);
              if (w) this.byKey.set(e.key, w);
              else this.byKey.delete(e.key);
            }
            this.replaceAll([...this.byKey.values()]);
          },
          attempt.signal,
        );
      } catch (e) {
        if (signal.aborted) return;
        // a restart asked by resync() keeps resync's message
        if (!attempt.signal.aborted) this.lastError = (e as Error).message;
      } finally {
        signal.removeEventListener('abort', stopAttempt);
      }
      // The stream ended or failed: re-list (events may have been missed) after a pause.
      revision = 0;
      await new Promise((r) => setTimeout(r, this.options.retryMs ?? 500).unref());
    }
  }

  /** A listing as the view it describes: worker entries by key, other values left out. */
  private parseAll(kvs: readonly EtcdKv[]): Map<string, WorkerEndpoint> {
    const view = new Map<string, WorkerEndpoint>();
    for (const kv of kvs) {
      const w = this.parse(kv.key, kv.value);
      if (w) view.set(kv.key, w);
    }
    return view;
  }

  private parse(key: string, value: string): WorkerEndpoint | null {
    try {
      const url = parseWorkerUrl((JSON.parse(value) as Partial<EtcdWorkerValue>).url);
      if (url !== null) return { id: key.slice(this.prefix.length), url };
    } catch {
      // not JSON: reported below
    }
    // Another gateway's or a stray writer's value: skipped (and said), never served.
    this.lastSkipped = `${key}: not a worker entry ({"url": "http(s)://..."}): ${value.slice(0, 200)}`;
    return null;
  }
}
