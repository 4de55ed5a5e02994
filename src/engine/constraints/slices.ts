/**
 * Compiles that run in slices: a generator does the work and yields every few ms, so that
 * a caller can give the event loop back between slices (other requests' streams, health
 * probes and heartbeats must not wait for a large grammar). runToEnd runs one unpaused.
 */

/** Time between the pauses of a sliced compile. */
const SLICE_MS = 4;

/** Says when a slice is used up. */
export class Slicer {
  private end = performance.now() + SLICE_MS;
  private turns = 0;

  /**
   * True when the caller should yield now (the next slice starts with this call). The clock
   * is read once every 64 calls (a call's work costs microseconds), or at every call for
   * `coarse` work (a call's work costs up to a millisecond).
   */
  due(coarse = false): boolean {
    if ((!coarse && (++this.turns & 63) !== 0) || performance.now() < this.end) return false;
    this.end = performance.now() + SLICE_MS;
    return true;
  }
}

/** Runs a sliced compile without pausing. */
export function runToEnd<T>(steps: Generator<void, T>): T {
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
  }
}
