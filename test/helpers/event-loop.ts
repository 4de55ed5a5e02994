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
