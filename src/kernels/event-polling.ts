/**
 * Paces Dawn's event polling so that waiting for the GPU does not burn a CPU core.
 *
 * Why: dawn.node resolves mapAsync() and onSubmittedWorkDone() by calling
 * wgpuInstanceProcessEvents from a setImmediate chain for as long as any of them is pending
 * (AsyncRunner::ScheduleProcessEvents, with a TODO about the frequency: crbug.com/dawn/1127).
 * With nothing else to do, Node's event loop then spins: the main thread runs at 100% of a
 * core for the whole GPU wait. On a GPU host that wastes one core. On lavapipe, where the
 * "GPU" is the same CPU cores, the spinning thread takes a core away from the shader
 * threads: measured on this 2-core machine, one 0.5 s kernel took 0.82 s while the main
 * thread spun and 0.53 s when it slept (bench note in bench/RESULTS.md, "GPU waits").
 *
 * How: Dawn looks the global `setImmediate` up on every tick, so a wrapper on the global
 * sees its ticks. A Dawn tick is an anonymous native function with no parameters
 * (`name === ''`, `length === 0`, native code). JavaScript code does not make those: bound
 * functions are named "bound f", and a promise's resolve and reject functions, the other
 * anonymous built-ins often handed to setImmediate (`new Promise((r) => setImmediate(r))`),
 * have length 1. During the first
 * `spinMs` of a wait, ticks pass through unchanged (short waits, such as a small readback,
 * are not slowed); after that each tick is re-scheduled with setTimeout(intervalMs), so a
 * long wait costs a wake-up per millisecond instead of a core. Every other setImmediate call
 * passes through untouched.
 */

export interface EventPollingPace {
  /** Waits shorter than this are polled as Dawn does (back to back); default 1 ms. */
  spinMs: number;
  /** After that, one poll per this many ms (Node timers: at least 1); default 1 ms. */
  intervalMs: number;
}

/** How to wait for the GPU (GpuOptions.eventPolling, AUTOGLM_GPU_EVENT_POLLING). */
export const EVENT_POLLING_MODES = ['auto', 'spin', 'paced'] as const;
export type EventPollingMode = (typeof EVENT_POLLING_MODES)[number];

const DEFAULT_PACE: EventPollingPace = { spinMs: 1, intervalMs: 1 };

type ImmediateFn = typeof globalThis.setImmediate;

let installed: { original: ImmediateFn; users: number } | null = null;

// The current wait, seen as one unbroken chain of Dawn ticks (each tick that still has
// pending work asks for the next one from inside its own callback):
/** When the chain began (performance.now()), or -1 between waits. */
let chainStartMs = -1;
/** Set when Dawn asks for a tick; cleared as one runs (so a tick that asks for none ends the chain). */
let tickRequested = false;
/** The paced tick waiting on a timer, if any (see nudgeDawnEventPolling). */
let timedTick: { timer: ReturnType<typeof setTimeout>; run: () => void } | null = null;

/** True for the callback Dawn's AsyncRunner hands to setImmediate. */
export function looksLikeDawnTick(fn: unknown, extraArgs: number): boolean {
  return (
    typeof fn === 'function' &&
    extraArgs === 0 &&
    fn.name === '' &&
    fn.length === 0 &&
    Function.prototype.toString.call(fn).endsWith('{ [native code] }')
  );
}

/**
 * Starts pacing (reference counted: each call must be matched by one call of the returned
 * release function). Later calls keep the first call's pace.
 */
export function paceDawnEventPolling(pace: EventPollingPace = DEFAULT_PACE): () => void {
  if (installed === null) installed = { original: globalThis.setImmediate, users: 0 };
  installed.users++;
  if (installed.users === 1) globalThis.setImmediate = pacedSetImmediate(installed.original, pace);
  let released = false;
  return () => {
    if (released || installed === null) return;
    released = true;
    if (--installed.users === 0) {
      nudgeDawnEventPolling(); // a tick on a timer still runs, at once
      globalThis.setImmediate = installed.original;
      installed = null;
      chainStartMs = -1;
      tickRequested = false;
    }
  };
}

/**
 * Call right after starting a GPU wait (mapAsync, onSubmittedWorkDone). Dawn asks for a new
 * tick only when none is queued, so a wait that starts while the previous wait's paced tick
 * sits on its timer would begin at the slow pace; this runs that tick now and restarts the
 * spin window, so a short wait stays short.
 */
export function nudgeDawnEventPolling(): void {
  if (timedTick === null || installed === null) return;
  const { timer, run } = timedTick;
  timedTick = null;
  clearTimeout(timer);
  chainStartMs = performance.now();
  installed.original(run);
}

/** Whether pacing is on now (for diagnostics and tests). */
export function isEventPollingPaced(): boolean {
  return installed !== null;
}

/** Resolves 'auto': paced on adapters whose "GPU" is the CPU, Dawn's own spinning elsewhere. */
export function resolveEventPollingMode(mode: EventPollingMode, cpuAdapter: boolean): 'spin' | 'paced' {
  if (mode === 'auto') return cpuAdapter ? 'paced' : 'spin';
  return mode;
}

function pacedSetImmediate(original: ImmediateFn, pace: EventPollingPace): ImmediateFn {
  const paced = function (this: unknown, fn: (...args: unknown[]) => void, ...args: unknown[]) {
    if (!looksLikeDawnTick(fn, args.length)) return original(fn, ...args);
    const now = performance.now();
    if (chainStartMs < 0) chainStartMs = now;
    tickRequested = true;
    const run = (): void => {
      if (timedTick?.run === run) timedTick = null;
      tickRequested = false;
      try {
        fn();
      } finally {
        if (!tickRequested) chainStartMs = -1; // nothing pending any more: the wait is over
      }
    };
    if (now - chainStartMs < pace.spinMs) return original(run);
    const timer = setTimeout(run, pace.intervalMs);
    timedTick = { timer, run };
    return timer as unknown as ReturnType<ImmediateFn>;
  };
  return Object.assign(paced, original) as unknown as ImmediateFn;
}
