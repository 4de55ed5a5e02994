import type { WorkerEndpoint } from '../types.js';
import { RegistryBase, sameWorkers } from './registry.js';

/**
 * A registry fed by a list-then-watch stream (etcd, Kubernetes). Subclasses list, watch and
 * renew the watch in their own loop; this base owns what they share: the loop's lifetime, and
 * the periodic resync. A watch whose connection went silent (half-open after a network
 * partition) never errors, so without a resync the view would stop changing while workers
 * come and go: every resyncMs the backend is listed again and, where the listing names other
 * workers than the watch has built, the watch attempt in progress is aborted, which makes the
 * loop list and watch afresh.
 */
export abstract class WatchedRegistry extends RegistryBase {
  lastError: string | null = null;
  /** Watches restarted because a listing showed changes they had not delivered (resyncMs). */
  watchRestarts = 0;
  /** Aborted by stop(): ends the loop. */
  protected abort: AbortController | null = null;
  /** Aborts the watch (or listing) in progress, not the loop, so that the loop lists and watches again. */
  protected watchAttempt: AbortController | null = null;
  private loop: Promise<void> | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  private resyncing = false;

  /** What resync's message calls the stream, e.g. 'the etcd watch'. */
  protected abstract readonly watchName: string;

  /** Lists the backend now, as the view it describes (keyed as watchedView() is). */
  protected abstract listView(signal: AbortSignal): Promise<ReadonlyMap<string, WorkerEndpoint>>;

  /** The view the watch has built so far. */
  protected abstract watchedView(): ReadonlyMap<string, WorkerEndpoint>;

  async stop(): Promise<void> {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.resyncTimer = null;
    this.abort?.abort();
    await this.loop?.catch(() => undefined);
    this.loop = null;
  }

  /** Called by start() once the first listing is done (or failed): runs the loop and the resync (0 = never). */
  protected runWatchLoop(loop: Promise<void>, resyncMs: number): void {
    this.loop = loop;
    if (resyncMs > 0) this.resyncTimer = setInterval(() => void this.resync(), resyncMs).unref();
  }

  /**
   * Lists and compares with the watch's view; a difference means the watch missed changes
   * (or they are still on their way: a restart costs one listing), so the attempt in progress
   * is aborted and the loop lists and watches again.
   */
  private async resync(): Promise<void> {
    const abort = this.abort;
    if (this.resyncing || !abort || abort.signal.aborted) return;
    this.resyncing = true;
    try {
      const listed = await this.listView(abort.signal);
      if (abort.signal.aborted) return;
      if (!sameWorkers(listed, this.watchedView()) && this.watchAttempt && !this.watchAttempt.signal.aborted) {
        this.lastError = `${this.watchName} had not delivered changes a listing shows (a silent connection?): watching again`;
        this.watchRestarts++;
        this.watchAttempt.abort();
      }
    } catch {
      // backend unreachable: the watch loop reports and retries on its own
    } finally {
      this.resyncing = false;
    }
  }
}
