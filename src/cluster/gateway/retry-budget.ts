/**
 * Bounds retries cluster-wide so a sick cluster is not hit with a retry storm (Envoy's
 * retry budget, Finagle's RetryBudget): each request deposits `ratio` of a retry, and a
 * floor of `minPerSecond` accrues with time; a retry spends one. The balance is capped so
 * a quiet period cannot bank an unbounded burst.
 */
export class RetryBudget {
  private balance: number;
  private lastMs: number;

  constructor(
    private readonly options: { ratio?: number; minPerSecond?: number; cap?: number } = {},
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.balance = this.cap;
    this.lastMs = nowMs();
  }

  private get cap(): number {
    return this.options.cap ?? 50;
  }

  onRequest(): void {
    this.refill();
    this.balance = Math.min(this.cap, this.balance + (this.options.ratio ?? 0.2));
  }

  /** Spends one retry if the budget allows it. */
  tryRetry(): boolean {
    this.refill();
    // With a tolerance: 0.2 added ten times is 1.9999999999999998, and ten requests must earn two retries.
    if (this.balance < 1 - 1e-9) return false;
    this.balance = Math.max(0, this.balance - 1);
    return true;
  }

  private refill(): void {
    const now = this.nowMs();
    this.balance = Math.min(this.cap, this.balance + ((now - this.lastMs) / 1000) * (this.options.minPerSecond ?? 5));
    this.lastMs = now;
  }
}
