import type { WorkerEndpoint } from '../types.js';
import { workersFromSlices, type EndpointSlice } from './endpoint-slices.js';
import { checkKubernetesName, resolveKubernetesAccess, type KubernetesAccessOptions } from './kubernetes-access.js';
import { KubernetesApiError, KubernetesClient, type WatchEvent } from './kubernetes-client.js';
import { WatchedRegistry } from './watched-registry.js';

export interface KubernetesRegistryOptions extends KubernetesAccessOptions {
  /** The workers' Service; its EndpointSlices name the workers. */
  service: string;
  /** The slice port that is the worker's (default: the one named `http`, else a slice's only port). */
  portName?: string;
  /**
   * List the slices this often (default 10000 ms; 0 = never) and, where the listing shows
   * workers the watch has not delivered, list and watch again: a watch whose connection went
   * silent (half-open after a partition) never errors, and the view would stop changing.
   */
  resyncMs?: number;
  /** First pause before watching again after a failure, doubling up to maxRetryMs (default 500 ms). */
  retryMs?: number;
  maxRetryMs?: number;
  /** The API server ends each watch after this long (default 300 s); it is renewed from where it got to. */
  watchTimeoutSeconds?: number;
  /** A listing, or a watch's response headers, must arrive within this (default 10000 ms). */
  requestTimeoutMs?: number;
}

/**
 * Workers are the ready endpoints of one Service's EndpointSlices, read from the Kubernetes
 * API: listed, then watched from the listing's resourceVersion. Unlike the headless
 * Service's DNS records (polled, cached for their TTL), a watch delivers a pod's change at
 * once, and it says when a pod is terminating, so the gateway stops sending it new requests
 * before its readiness probe fails, while the requests it has finish there.
 *
 * start() rejects when the first listing is refused (401/403: RBAC or credentials missing,
 * which waiting does not fix); an unreachable API server is retried like a broken watch.
 */
export class KubernetesRegistry extends WatchedRegistry {
  readonly kind = 'kubernetes';
  protected readonly watchName = 'the EndpointSlice watch';
  private readonly client: KubernetesClient;
  private readonly service: string;
  private readonly namespace: string;
  private slices = new Map<string, EndpointSlice>();
  /** The resourceVersion the view is at (the last listing, event or bookmark). */
  resourceVersion: string | null = null;
  /** The last slice or endpoint that named no worker, and why. */
  lastSkipped: string | null = null;
  /** Listings after the first: a watch's resourceVersion expired (410), the watch missed changes, or it failed before it had one. */
  relists = 0;

  constructor(private readonly options: KubernetesRegistryOptions) {
    super();
    this.service = checkKubernetesName(options.service, 'service', 'k8s-service');
    if (options.namespace !== undefined) checkKubernetesName(options.namespace, 'namespace', 'k8s-namespace');
    if (options.portName !== undefined) checkKubernetesName(options.portName, 'port name', 'k8s-port-name');
    const access = resolveKubernetesAccess(options);
    this.namespace = access.namespace;
    this.client = new KubernetesClient(
      access,
      options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {},
    );
  }

  /** `namespace/service`, as logs and the start-up banner name the source. */
  get source(): string {
    return `${this.namespace}/${this.service}`;
  }

  async start(): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    let version: string | null = null;
    try {
      version = await this.relist(abort.signal);
    } catch (e) {
      const status = (e as KubernetesApiError).status;
      if (status === 401 || status === 403) {
        this.abort = null;
        throw new KubernetesApiError(
          `${(e as Error).message} (the gateway's service account needs get, list and watch on endpointslices.discovery.k8s.io in namespace ${this.namespace}; deploy/kubernetes/gateway-rbac.yaml grants them)`,
          status,
        );
      }
      this.lastError = (e as Error).message;
    }
    this.runWatchLoop(this.watchLoop(version, abort.signal), this.options.resyncMs ?? 10_000);
  }

  /** Lists the slices into the view; returns the resourceVersion to watch from. */
  private async relist(signal: AbortSignal): Promise<string> {
    const { slices, resourceVersion } = await this.client.listEndpointSlices(this.service, signal);
    // After stop() the view stays as it was (and wakes nobody).
    if (this.abort?.signal.aborted) return resourceVersion;
    this.slices = new Map(slices.map((s) => [s.metadata.name, s]));
    this.publish();
    this.lastError = null;
    this.resourceVersion = resourceVersion;
    return resourceVersion;
  }

  private publish(): void {
    const { workers, skipped } = workersFromSlices(this.slices.values(), this.options.portName);
    if (skipped !== null) this.lastSkipped = skipped;
    this.replaceAll(workers);
  }

  /** Applies one watch event; returns the resourceVersion it brings the watch to. */
  private apply(event: WatchEvent): string {
    const slice = event.object;
    if (event.type === 'ADDED' || event.type === 'MODIFIED') this.slices.set(slice.metadata.name, slice);
    else if (event.type === 'DELETED') this.slices.delete(slice.metadata.name);
    // A BOOKMARK only moves the resourceVersion on, so that a renewed watch starts recent.
    if (event.type !== 'BOOKMARK') this.publish();
    this.resourceVersion = slice.metadata.resourceVersion!;
    return this.resourceVersion;
  }

  /**
   * Watch, renew, repeat. A watch the server ends (timeoutSeconds) is renewed at once from
   * the last resourceVersion seen; one that fails is renewed after a pause that doubles
   * while attempts get nowhere; a resourceVersion the server no longer has (410 Gone, as a
   * status or an ERROR event) means events were lost: list again, then watch from there.
   */
  private async watchLoop(fromVersion: string | null, signal: AbortSignal): Promise<void> {
    let version = fromVersion;
    /** Attempts in a row whose watch delivered nothing. */
    let fruitless = 0;
    while (!signal.aborted) {
      const attempt = new AbortController();
      const stopAttempt = (): void => attempt.abort();
      signal.addEventListener('abort', stopAttempt, { once: true });
      this.watchAttempt = attempt;
      let delivered = false;
      let failed = false;
      try {
        if (version === null) {
          version = await this.relist(attempt.signal);
          this.relists++;
        }
        await this.client.watchEndpointSlices(
          this.service,
          version,
          (event) => {
            version = this.apply(event);
            delivered = true;
          },
          attempt.signal,
          this.options.watchTimeoutSeconds ?? 300,
          // A watch renewed from where it got to (no listing, which also clears it) shows
          // discovery works again: the failure that made it renew is over.
          () => {
            this.lastError = null;
          },
        );
      } catch (e) {
        if (signal.aborted) return;
        if (attempt.signal.aborted) {
          // resync() asked for a fresh listing (and left its message): at once
          version = null;
          continue;
        }
        this.lastError = (e as Error).message;
        if (e instanceof KubernetesApiError && e.expired) version = null;
        else failed = true;
      } finally {
        signal.removeEventListener('abort', stopAttempt);
        // Nothing for resync() to restart while the loop pauses: the next attempt starts afresh.
        this.watchAttempt = null;
      }
      fruitless = delivered ? 0 : fruitless + 1;
      // Renewed at once: a watch the server ended after delivering something, and a 410 after
      // events (list again). Paused, longer each time: failures, and watches that get nowhere
      // (a server that ends every watch at once, or answers 410 to a fresh resourceVersion).
      if (failed || fruitless > 0) await this.pause(Math.max(1, fruitless), signal);
    }
  }

  /** The back-off before attempt n (1, 2, ...): retryMs doubling to maxRetryMs, with jitter so gateways do not retry in step. */
  private pause(n: number, signal: AbortSignal): Promise<void> {
    const base = this.options.retryMs ?? 500;
    const ms = Math.min(this.options.maxRetryMs ?? 30_000, base * 2 ** Math.min(n - 1, 16)) * (0.8 + 0.4 * Math.random());
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }

  protected async listView(signal: AbortSignal): Promise<Map<string, WorkerEndpoint>> {
    const { slices } = await this.client.listEndpointSlices(this.service, signal);
    return byId(workersFromSlices(slices, this.options.portName).workers);
  }

  protected watchedView(): Map<string, WorkerEndpoint> {
    return byId(this.list());
  }
}

function byId(workers: readonly WorkerEndpoint[]): Map<string, WorkerEndpoint> {
  return new Map(workers.map((w) => [w.id, w]));
}
