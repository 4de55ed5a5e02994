import { parseWorkerUrl, type WorkerEndpoint } from '../types.js';

/**
 * Where the gateway learns which workers exist. Backends differ only in how they find
 * out (a static list, heartbeats, DNS, etcd); health is the monitor's job, not theirs.
 */
export interface WorkerRegistry {
  readonly kind: string;
  /** Starts discovery; resolves after the first view is loaded (or the first attempt failed). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The current set of workers. */
  list(): WorkerEndpoint[];
  /** Called with the full new set whenever it changes. Returns an unsubscribe function. */
  onChange(listener: (workers: WorkerEndpoint[]) => void): () => void;
  /**
   * Backends that can fail after start (DNS, etcd, Kubernetes): the latest discovery failure,
   * null once discovery works again. Meanwhile the view is the last one that worked.
   */
  readonly lastError?: string | null;
}

/** Shared bookkeeping: hold the set, notify listeners only when it really changed. */
export abstract class RegistryBase implements WorkerRegistry {
  abstract readonly kind: string;
  private workers = new Map<string, WorkerEndpoint>();
  private readonly listeners = new Set<(workers: WorkerEndpoint[]) => void>();

  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;

  list(): WorkerEndpoint[] {
    return [...this.workers.values()];
  }

  onChange(listener: (workers: WorkerEndpoint[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Replaces the whole set (DNS answers, etcd ranges). Entries without a usable URL are left out. */
  protected replaceAll(workers: WorkerEndpoint[]): void {
    const next = new Map(workers.filter(reachable).map((w) => [w.id, w]));
    if (sameWorkers(next, this.workers)) return;
    this.workers = next;
    this.emit();
  }

  protected upsert(worker: WorkerEndpoint): void {
    if (!reachable(worker) || this.workers.get(worker.id)?.url === worker.url) return;
    this.workers.set(worker.id, worker);
    this.emit();
  }

  protected remove(id: string): void {
    if (this.workers.delete(id)) this.emit();
  }

  private emit(): void {
    const snapshot = this.list();
    for (const l of this.listeners) l(snapshot);
  }
}

/** Whether two views hold the same keys at the same URLs. */
export function sameWorkers(a: ReadonlyMap<string, WorkerEndpoint>, b: ReadonlyMap<string, WorkerEndpoint>): boolean {
  return a.size === b.size && [...a].every(([key, w]) => b.get(key)?.url === w.url);
}

/** The last line of defence: backends check URLs where they come in and say what was wrong. */
function reachable(worker: WorkerEndpoint): boolean {
  return parseWorkerUrl(worker.url) === worker.url;
}
