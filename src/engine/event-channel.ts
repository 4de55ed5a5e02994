/**
 * A single-consumer async channel: the engine's step loop pushes token events, the
 * request's `generate()` iterator pulls them. Errors end the iteration by throwing.
 */
export class EventChannel<T> implements AsyncIterable<T> {
  private readonly buffered: T[] = [];
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
  private closed = false;
  private failure: unknown = null;
  private onReturn: (() => void) | null = null;

  /** Called when the consumer stops early (break / return), e.g. to cancel the request. */
  onConsumerExit(fn: () => void): void {
    this.onReturn = fn;
  }

  push(value: T): void {
    if (this.closed) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value, done: false });
    } else this.buffered.push(value);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.waiter && this.buffered.length === 0) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: undefined, done: true });
    }
  }

  fail(error: unknown): void {
    if (this.closed) return;
    this.failure = error;
    this.closed = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(error);
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.buffered.length > 0) return Promise.resolve({ value: this.buffered.shift()!, done: false });
        if (this.failure !== null) return Promise.reject(this.failure);
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
      },
      return: () => {
        const wasOpen = !this.closed;
        this.closed = true;
        this.buffered.length = 0;
        if (wasOpen) this.onReturn?.();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
