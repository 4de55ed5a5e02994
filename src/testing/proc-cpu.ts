/**
 * CPU time of processes and threads from Linux /proc, for benchmarks and tests that check
 * how much CPU something burns (a GPU wait, a gateway). NaN where /proc is missing.
 */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clockTicksPerS: number | undefined;

/** The kernel's clock tick rate (CLK_TCK, almost always 100), read once. */
function clockTicks(): number {
  if (clockTicksPerS === undefined) {
    try {
      clockTicksPerS = Number(execSync('getconf CLK_TCK', { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicksPerS = 100;
    }
  }
  return clockTicksPerS;
}

/** User + system time in ms from a /proc stat file (its 14th and 15th fields), NaN if unreadable. */
function statCpuMs(path: string): number {
  try {
    // the command name (field 2) may contain spaces; the fields after it are split from ") "
    const fields = readFileSync(path, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks();
  } catch {
    return NaN;
  }
}

/** User + system CPU time of a whole process so far, in ms (all its threads). */
export function processCpuMs(pid: number | undefined): number {
  return pid === undefined ? NaN : statCpuMs(`/proc/${pid}/stat`);
}

/** User + system CPU time of this process's main thread so far, in ms. */
export function mainThreadCpuMs(): number {
  return statCpuMs(`/proc/self/task/${process.pid}/stat`);
}
