/**
 * Token buckets per client identity: each request takes one token; tokens refill at
 * `requestsPerSecond` up to `burst`. Buckets that are full again are dropped on sweep so
 * the map cannot grow without bound.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; updatedMs: number }>();
  private lastSweepMs = 0;

  constructor(
    private readonly options: { requestsPerSecond: number; burst: number },
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** True if the request may proceed; otherwise the seconds until a token is available. */
  take(identity: string): { allowed: true } | { allowed: false; retryAfterSeconds: number } {
    const now = this.nowMs();
    this.sweep(now);
    const b = this.buckets.get(identity) ?? { tokens: this.options.burst, updatedMs: now };
    b.tokens = Math.min(this.options.burst, b.tokens + ((now - b.updatedMs) / 1000) * this.options.requestsPerSecond);
    b.updatedMs = now;
    this.buckets.set(identity, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.ceil((1 - b.tokens) / this.options.requestsPerSecond) };
  }

  private sweep(now: number): void {
    if (now - this.lastSweepMs < 60_000) return;
    this.lastSweepMs = now;
    const fullAfterMs = (this.options.burst / this.options.requestsPerSecond) * 1000;
    for (const [k, b] of this.buckets) if (now - b.updatedMs > fullAfterMs) this.buckets.delete(k);
  }
}
