/**
 * Token masks by automaton state, least recently used first out, bounded in bytes. Inside a
 * string, or between an object's values, the same state comes back step after step and
 * request after request: its mask is computed once. A 150k vocabulary's mask is 19 KB.
 */
export class MaskCache {
  private readonly entries = new Map<string, Uint32Array>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes: number) {}

  /** The cached mask (shared: never write to it), or undefined. */
  get(key: string): Uint32Array | undefined {
    const mask = this.entries.get(key);
    if (mask === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    // most recently used last
    this.entries.delete(key);
    this.entries.set(key, mask);
    return mask;
  }

  set(key: string, mask: Uint32Array): void {
    if (mask.byteLength > this.maxBytes) return;
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.bytes -= old.byteLength;
    }
    this.entries.set(key, mask);
    this.bytes += mask.byteLength;
    for (const [k, m] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= m.byteLength;
    }
  }

  get size(): number {
    return this.entries.size;
  }
}
