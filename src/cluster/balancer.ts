import { createHash } from 'node:crypto';
import type { WorkerEndpoint } from './types.js';

export interface BalancerOptions {
  /** Load measure: requests in flight, or tokens still to be produced/read (default requests). */
  mode?: 'requests' | 'tokens';
  /**
   * Requests sharing a prompt prefix go to the same worker (its KV cache already holds
   * the prefix) unless that worker's load exceeds `maxImbalance` x the least-loaded
   * candidate's plus `slack`; then power of two choices decides as usual.
   */
  affinity?: { maxImbalance?: number; slack?: number };
  random?: () => number;
}

/** One request's load on a worker; `done()` removes it. */
export interface LoadTicket {
  /** Tokens delivered so far (token mode: the remaining estimate shrinks). */
  progress(tokens: number): void;
  done(): void;
}

/**
 * Least outstanding load with power of two choices: sample two distinct candidates, take
 * the less loaded. Cheap, needs no global sort, and avoids the herd that pure
 * least-loaded causes when several gateways share stale load views.
 */
export class Balancer {
  private readonly load = new Map<string, { requests: number; tokens: number }>();
  private readonly random: () => number;

  constructor(private readonly options: BalancerOptions = {}) {
    this.random = options.random ?? Math.random;
  }

  outstanding(id: string): { requests: number; tokens: number } {
    return this.load.get(id) ?? { requests: 0, tokens: 0 };
  }

  private score(id: string): number {
    const l = this.outstanding(id);
    return this.options.mode === 'tokens' ? l.tokens : l.requests;
  }

  pick(candidates: readonly WorkerEndpoint[], options: { affinityKey?: string } = {}): WorkerEndpoint | null {
    if (candidates.length === 0) return null;
    if (candidates.length === 1) return candidates[0]!;
    if (this.options.affinity && options.affinityKey !== undefined) {
      const preferred = rendezvous(candidates, options.affinityKey);
      const least = Math.min(...candidates.map((c) => this.score(c.id)));
      const { maxImbalance = 1.5, slack = 2 } = this.options.affinity;
      if (this.score(preferred.id) <= least * maxImbalance + slack) return preferred;
    }
    const i = Math.floor(this.random() * candidates.length);
    let j = Math.floor(this.random() * (candidates.length - 1));
    if (j >= i) j++;
    const a = candidates[i]!;
    const b = candidates[j]!;
    const sa = this.score(a.id);
    const sb = this.score(b.id);
    return sa < sb ? a : sb < sa ? b : this.random() < 0.5 ? a : b;
  }

  /** Counts a request against a worker until `done()`; `estimatedTokens` is prompt + max output. */
  acquire(id: string, estimatedTokens: number): LoadTicket {
    const l = this.load.get(id) ?? { requests: 0, tokens: 0 };
    this.load.set(id, l);
    l.requests++;
    l.tokens += estimatedTokens;
    let remaining = estimatedTokens;
    let released = false;
    return {
      progress: (tokens) => {
        if (released) return;
        const d = Math.min(remaining, tokens);
        remaining -= d;
        l.tokens -= d;
      },
      done: () => {
        if (released) return;
        released = true;
        l.requests--;
        l.tokens -= remaining;
        if (l.requests === 0) this.load.delete(id);
      },
    };
  }
}

/** Highest-random-weight hashing: a key keeps its worker while that worker stays; removal moves only its keys. */
function rendezvous(candidates: readonly WorkerEndpoint[], key: string): WorkerEndpoint {
  let best = candidates[0]!;
  let bestWeight = -1n;
  for (const c of candidates) {
    const w = createHash('sha256').update(c.id).update('\0').update(key).digest().readBigUInt64BE(0);
    if (w > bestWeight) {
      bestWeight = w;
      best = c;
    }
  }
  return best;
}
