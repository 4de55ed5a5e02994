/**
 * A single-consumer async channel: the engine's step loop pushes token events, the
 * request's `generate()` iterator pulls them. Errors end the iteration by throwing.
 * A consumer may call next() again before the last call settled (a hand-written loop, or
 * Promise.all over next()): each pending call gets the next value in order, and all of them
 * settle when the channel closes, fails or the consumer returns.
 */
interface Waiter<T> {
  resolve: (r: IteratorResult<T>) => void;
  reject: (e: unknown) => void;
}

export class EventChannel<T> implements AsyncIterable<T> {
  private readonly buffered: T[] = [];
  private readonly waiters: Waiter<T>[] = [];
  private closed = false;
  private failure: unknown = null;
  private onReturn: (() => void) | null = null;

  /** Called when the consumer stops early (break / return), e.g. to cancel the request. */
  onConsumerExit(fn: () => void): void {
    this.onReturn = fn;
  }

  push(value: T): void {
    if (this.closed) return;
    const w = this.waiters.shift();
    if (w) w.resolve({ value, done: false });
    else this.buffered.push(value);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // waiters only wait while nothing is buffered
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
  }

  fail(error: unknown): void {
    if (this.closed) return;
    this.failure = error;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(error);
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
        return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
      },
      return: () => {
        const wasOpen = !this.closed;
        this.closed = true;
        this.buffered.length = 0;
        for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
        if (wasOpen) this.onReturn?.();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
