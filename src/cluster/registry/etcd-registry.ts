import { parseWorkerUrl, type WorkerEndpoint } from '../types.js';
import { EtcdClient } from './etcd-client.js';
import { RegistryBase } from './registry.js';

export const DEFAULT_ETCD_PREFIX = '/autoglm/workers/';

export interface EtcdRegistryOptions {
  /** etcd client URL, e.g. http://127.0.0.1:2379. */
  url: string;
  /** Key prefix workers register under (default /autoglm/workers/). */
  prefix?: string;
  /** Wait before re-listing after the watch stream breaks (default 500 ms). */
  retryMs?: number;
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
export class EtcdRegistry extends RegistryBase {
  readonly kind = 'etcd';
  private readonly client: EtcdClient;
  private readonly prefix: string;
  private abort: AbortController | null = null;
  private loop: Promise<void> | null = null;
  private readonly byKey = new Map<string, WorkerEndpoint>();
  lastError: string | null = null;
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
    this.loop = this.watchLoop(first, this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    await this.loop?.catch(() => undefined);
    this.loop = null;
  }

  /** Lists the prefix into the view; returns the revision to watch from. */
  private async list0(): Promise<number> {
    const { kvs, revision } = await this.client.rangePrefix(this.prefix);
    // stop() aborts the watch, not a listing in flight: after stop() the view stays as it was.
    if (this.abort?.signal.aborted) return revision + 1;
    this.byKey.clear();
    for (const kv of kvs) {
      const w = this.parse(kv.key, kv.value);
      if (w) this.byKey.set(kv.key, w);
    }
    this.replaceAll([...this.byKey.values()]);
    this.lastError = null;
    return revision + 1;
  }

  private async watchLoop(fromRevision: number, signal: AbortSignal): Promise<void> {
    let revision = fromRevision;
    while (!signal.aborted) {
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
          signal,
        );
      } catch (e) {
        if (signal.aborted) return;
        this.lastError = (e as Error).message;
      }
      // The stream ended or failed: re-list (events may have been missed) after a pause.
      revision = 0;
      await new Promise((r) => setTimeout(r, this.options.retryMs ?? 500).unref());
    }
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
