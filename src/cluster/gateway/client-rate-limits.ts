import { AutoGlmError } from '../../errors.js';
import { RateLimiter } from '../../server/rate-limiter.js';
import type { RateLimit } from './options.js';

type Verdict = ReturnType<RateLimiter['take']>;

/**
 * The gateway's client rate limits: one default limit with a bucket per identity (API key
 * or IP), and keys with a limit of their own. Each of those gets its own RateLimiter (one
 * bucket in it), so the server's limiter stays a one-limit class.
 */
export class ClientRateLimits {
  private readonly byIdentity = new Map<string, RateLimiter | null>();
  private readonly fallback: RateLimiter | null;

  /**
   * `identityOf` maps an API key to the identity the auth check returns for it (the
   * key itself never reaches the limiter's map).
   */
  constructor(
    defaultLimit: RateLimit | undefined,
    keyLimits: ReadonlyMap<string, RateLimit | null>,
    identityOf: (apiKey: string) => string | null,
  ) {
    this.fallback = defaultLimit ? new RateLimiter(defaultLimit) : null;
    for (const [key, limit] of keyLimits) {
      const identity = identityOf(key);
      // A limit for a key nobody can authenticate with is a configuration mistake, not a no-op.
      if (identity === null) throw new AutoGlmError('invalid_request', 'keyRateLimits names a key that is not in auth.apiKeys.');
      this.byIdentity.set(identity, limit ? new RateLimiter(limit) : null);
    }
  }

  /** True when no identity is ever limited (the guard can skip the check). */
  get unlimited(): boolean {
    return this.fallback === null && [...this.byIdentity.values()].every((l) => l === null);
  }

  take(identity: string): Verdict {
    const limiter = this.byIdentity.has(identity) ? this.byIdentity.get(identity)! : this.fallback;
    return limiter ? limiter.take(identity) : { allowed: true };
  }
}
