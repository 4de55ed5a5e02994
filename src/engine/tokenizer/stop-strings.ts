/**
 * Stop strings over a text stream. Text that could be the beginning of a stop string is
 * held back until the next delta settles it, so a client never sees part of a stop
 * string; on a hit, the text before the earliest stop string is released (with the stop
 * string itself when `includeStop` is set, vLLM's include_stop_str_in_output) and the rest
 * dropped.
 */

export interface StopStringOptions {
  /** Release the stop string that matched, at the end of the text. */
  includeStop?: boolean;
}

export interface StopMatch {
  /** Text safe to emit now. */
  text: string;
  /** A stop string was found; nothing more will be emitted. */
  stopped: boolean;
  /** Which stop string ended the stream. */
  stop?: string;
}

export class StopStringMatcher {
  private readonly stops: string[];
  private pending = '';
  private done = false;

  constructor(
    stops: readonly string[],
    private readonly options: StopStringOptions = {},
  ) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  get stopped(): boolean {
    return this.done;
  }

  /**
   * Adds text. With `canStop` false (before min_tokens) a stop string is not a hit, but the
   * text that could begin one is still held back: a stop string that begins there and ends
   * in text pushed later, when stops count, still ends the stream (vLLM's min_tokens: its
   * stop check looks back stop-length - 1 characters into the earlier text).
   */
  push(text: string, canStop = true): StopMatch {
    if (this.done) return { text: '', stopped: true };
    this.pending += text;
    if (!canStop) return this.releaseSettled();
    let hitAt = -1;
    let hit: string | undefined;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (hitAt < 0 || at < hitAt)) {
        hitAt = at;
        hit = s;
      }
    }
    if (hit !== undefined) {
      this.done = true;
      const out = this.pending.slice(0, this.options.includeStop ? hitAt + hit.length : hitAt);
      this.pending = '';
      return { text: out, stopped: true, stop: hit };
    }
    return this.releaseSettled();
  }

  /** Everything pending but its longest end that could still begin a stop string. */
  private releaseSettled(): StopMatch {
    const hold = this.heldSuffixLength();
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { text: out, stopped: false };
  }

  /** The held-back text, at the end of the stream (it matched no stop string after all). */
  flush(): string {
    const out = this.done ? '' : this.pending;
    this.pending = '';
    return out;
  }

  /** Length of the longest suffix of pending that is a proper prefix of some stop string. */
  private heldSuffixLength(): number {
    let best = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > best; k--) {
        if (this.pending.endsWith(s.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}
