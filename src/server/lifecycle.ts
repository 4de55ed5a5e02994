import { AutoGlmError } from '../errors.js';
import type { InferenceEngine } from '../engine/types.js';

/**
 * The server's life: loading -> ready -> draining. Tracks requests in flight so a drain
 * can wait for them, and holds an AbortController per request so a drain that runs out
 * of time can cancel what is left (freeing KV blocks before the engine closes).
 */
export class ServerLifecycle {
  private engineValue: InferenceEngine | null = null;
  private loadError: unknown = null;
  private drainingFlag = false;
  private readonly inFlight = new Set<AbortController>();
  private idleWaiters: (() => void)[] = [];

  constructor(engine: InferenceEngine | Promise<InferenceEngine>) {
    if (isPromise(engine)) {
      engine.then(
        (e) => (this.engineValue = e),
        (err: unknown) => (this.loadError = err),
      );
    } else this.engineValue = engine;
  }

  get ready(): boolean {
    return this.engineValue !== null && !this.drainingFlag;
  }

  get draining(): boolean {
    return this.drainingFlag;
  }

  get loadFailure(): unknown {
    return this.loadError;
  }

  /** Why the engine can no longer serve (its GPU device was lost), or null. */
  get fault(): string | null {
    return this.engineValue?.fault?.() ?? null;
  }

  /** What /ready reports: failed also when the model did not load or its GPU is gone. */
  get status(): 'loading' | 'ready' | 'draining' | 'failed' {
    if (this.fault !== null) return 'failed';
    if (this.drainingFlag) return 'draining';
    if (this.engineValue !== null) return 'ready';
    return this.loadError ? 'failed' : 'loading';
  }

  get pending(): number {
    return this.inFlight.size;
  }

  /** The engine, or a 503 when it is still loading. */
  engine(): InferenceEngine {
    if (this.engineValue === null) throw new AutoGlmError('not_ready', 'The model is still loading.');
    return this.engineValue;
  }

  maybeEngine(): InferenceEngine | null {
    return this.engineValue;
  }

  /** Registers a request; the returned controller aborts it on disconnect or drain timeout. */
  admit(): { controller: AbortController; release: () => void } {
    const controller = new AbortController();
    this.inFlight.add(controller);
    let released = false;
    return {
      controller,
      release: () => {
        if (released) return;
        released = true;
        this.inFlight.delete(controller);
        if (this.inFlight.size === 0) for (const w of this.idleWaiters.splice(0)) w();
      },
    };
  }

  /**
   * Refuses new work from now on, waits for requests in flight to finish, and aborts the
   * remainder after `timeoutMs`. Resolves with the number of requests that had to be aborted.
   */
  async drain(timeoutMs: number): Promise<number> {
    this.drainingFlag = true;
    if (this.inFlight.size === 0) return 0;
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const outcome = await Promise.race([idle, timedOut]);
    clearTimeout(timer);
    if (outcome !== 'timeout') return 0;
    const aborted = this.inFlight.size;
    for (const c of this.inFlight) c.abort(new AutoGlmError('server_draining', 'The server is shutting down.'));
    // Aborted requests release within one engine step; the bound guards against a wedged engine.
    await Promise.race([idle, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    return aborted;
  }
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown }).then === 'function';
}
