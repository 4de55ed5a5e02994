/** How many turns the event loop made while `run` ran: 0 when it held the loop throughout (a compile done inline). */
export async function eventLoopTurnsDuring(run: () => Promise<unknown>): Promise<number> {
  let turns = 0;
  let done = false;
  const ticker = (async () => {
    while (!done) {
      await new Promise<void>((r) => setImmediate(r));
      turns++;
    }
  })();
  try {
    await run();
  } finally {
    done = true;
    await ticker;
  }
  return turns;
}

/** Runs a sliced compile (a generator that yields between slices) to its end: its value and how many times it paused. */
export function runCountingPauses<T>(steps: Generator<void, T>): { value: T; pauses: number } {
  let pauses = 0;
  for (;;) {
    const next = steps.next();
    if (next.done) return { value: next.value, pauses };
    pauses++;
  }
}
