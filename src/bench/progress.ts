/**
 * A one-line progress bar on stderr for long benchmark runs; silent when stderr is not a
 * TTY (CI logs, pipes), so JSON on stdout and log files stay clean.
 */
export interface ProgressBar {
  update(done: number, note?: string): void;
  finish(): void;
}

export function progressBar(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  if (!stream.isTTY) return { update() {}, finish() {} };
  const start = performance.now();
  let last = 0;
  const draw = (done: number, note = '') => {
    const width = 30;
    const frac = total > 0 ? Math.min(done / total, 1) : 0;
    const filled = Math.round(frac * width);
    const elapsedS = (performance.now() - start) / 1000;
    const etaS = frac > 0 ? (elapsedS / frac) * (1 - frac) : Number.NaN;
    const eta = Number.isFinite(etaS) ? ` eta ${etaS.toFixed(0)}s` : '';
    stream.write(
      `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${elapsedS.toFixed(0)}s${eta} ${note}\x1b[K`,
    );
  };
  return {
    update(done, note) {
      // at most ~10 redraws a second
      const now = performance.now();
      if (done < total && now - last < 100) return;
      last = now;
      draw(done, note);
    },
    finish() {
      stream.write('\n');
    },
  };
}
