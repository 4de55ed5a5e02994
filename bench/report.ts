/**
 * Shared benchmark helpers: GPU timing (median and spread over repeated runs after a
 * warm-up), a plain-text table, JSON results in bench/results/, and the replacement of
 * one marked section of bench/RESULTS.md so that each benchmark owns its own section.
 */
import { execSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Recorder } from '../src/kernels/recorder.js';
import type { KernelRuntime } from '../src/kernels/runtime.js';

export interface Timing {
  /** Median time of one repetition of the recorded work, ms. */
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** (max - min) / median over the samples, as a fraction. */
  spread: number;
  /** Repetitions recorded into each timed submit. */
  perSubmit: number;
  samples: number;
  method: 'timestamp' | 'wall';
}

export interface TimeOptions {
  warmup?: number;
  repeats?: number;
  /** Each sample records enough repetitions into one submit to last about this long. */
  targetSampleMs?: number;
  maxPerSubmit?: number;
}

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bench'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('repository root not found');
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * GPU time between two timestamps written by empty compute passes submitted just before
 * and just after the work. The work itself is recorded by the kernels' own Recorder, which
 * opens its own passes, so the timestamps bracket it from neighbouring command buffers.
 */
class TimestampBracket {
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private readonly readback: GPUBuffer;

  constructor(private readonly rt: KernelRuntime) {
    const d = rt.device;
    this.querySet = d.createQuerySet({ type: 'timestamp', count: 2 });
    this.resolve = d.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.readback = d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  private mark(index: number, finish: boolean): void {
    const enc = this.rt.device.createCommandEncoder();
    enc
      .beginComputePass({
        timestampWrites: { querySet: this.querySet, [index === 0 ? 'beginningOfPassWriteIndex' : 'endOfPassWriteIndex']: index },
      })
      .end();
    if (finish) {
      enc.resolveQuerySet(this.querySet, 0, 2, this.resolve, 0);
      enc.copyBufferToBuffer(this.resolve, 0, this.readback, 0, 16);
    }
    this.rt.device.queue.submit([enc.finish()]);
  }

  async time(record: () => void): Promise<number> {
    this.mark(0, false);
    record();
    this.mark(1, true);
    await this.readback.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(this.readback.getMappedRange().slice(0));
    this.readback.unmap();
    return Number(t[1]! - t[0]!) / 1e6;
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolve.destroy();
    this.readback.destroy();
  }
}

async function wallTime(rt: KernelRuntime, record: () => void): Promise<number> {
  await rt.device.queue.onSubmittedWorkDone();
  const t0 = performance.now();
  record();
  await rt.device.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

/**
 * Times `record` (which records one repetition of the work into the recorder it is given).
 * Uses timestamp queries when the device has them, else wall clock around the submit.
 */
export async function timeGpu(rt: KernelRuntime, record: (rec: Recorder) => void, o: TimeOptions = {}): Promise<Timing> {
  const warmup = o.warmup ?? 2;
  const repeats = o.repeats ?? 7;
  const target = o.targetSampleMs ?? 200;
  const bracket = rt.ctx.features.timestampQuery ? new TimestampBracket(rt) : null;
  const sample = async (perSubmit: number): Promise<number> => {
    const submit = (): void => {
      const rec = rt.recorder();
      for (let i = 0; i < perSubmit; i++) record(rec);
      rec.submitSync();
    };
    const ms = bracket ? await bracket.time(submit) : await wallTime(rt, submit);
    await rt.errors.flush();
    return ms / perSubmit;
  };
  try {
    let one = Infinity;
    for (let i = 0; i < Math.max(1, warmup); i++) one = Math.min(one, await sample(1));
    const perSubmit = Math.max(1, Math.min(o.maxPerSubmit ?? 64, Math.floor(target / Math.max(one, 1e-3))));
    const ms: number[] = [];
    for (let i = 0; i < repeats; i++) ms.push(await sample(perSubmit));
    const med = median(ms);
    const min = Math.min(...ms);
    const max = Math.max(...ms);
    return {
      medianMs: med,
      minMs: min,
      maxMs: max,
      spread: (max - min) / med,
      perSubmit,
      samples: repeats,
      method: bracket ? 'timestamp' : 'wall',
    };
  } finally {
    bracket?.destroy();
  }
}

export type Cell = string | number | undefined;

function fmt(v: Cell): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return '-';
  // counts (requests, failures, concurrency) print as counts, not as measurements
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/** A fixed-width text table (for the terminal). */
export function formatTable(headers: readonly string[], rows: readonly Cell[][]): string {
  const cells = rows.map((r) => r.map(fmt));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/** The same table as Markdown (for RESULTS.md). */
export function markdownTable(headers: readonly string[], rows: readonly Cell[][]): string {
  const line = (r: readonly string[]): string => `| ${r.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map((r) => line(r.map(fmt)))].join('\n');
}

/** Writes bench/results/<name>.json and returns its path. */
export function writeResultsJson(name: string, data: unknown): string {
  const dir = join(repoRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n');
  return path;
}

/**
 * Replaces the text between `<!-- section:NAME -->` and `<!-- /section:NAME -->` in
 * `document` (appending the section when absent); the rest is left byte for byte.
 */
export function replaceSection(document: string, name: string, body: string): string {
  const open = `<!-- section:${name} -->`;
  const close = `<!-- /section:${name} -->`;
  const block = `${open}\n${body.trim()}\n${close}`;
  const start = document.indexOf(open);
  const end = document.indexOf(close);
  if (start >= 0 && end > start) return document.slice(0, start) + block + document.slice(end + close.length);
  const sep = document.length === 0 || document.endsWith('\n\n') ? '' : document.endsWith('\n') ? '\n' : '\n\n';
  return `${document}${sep}${block}\n`;
}

/** Updates one section of bench/RESULTS.md in place. */
export function updateResultsSection(name: string, body: string): string {
  const path = join(repoRoot(), 'bench', 'RESULTS.md');
  const doc = existsSync(path)
    ? readFileSync(path, 'utf8')
    : '# Benchmark results\n\nEach section is written by its benchmark; rerun it to refresh.\n\n';
  writeFileSync(path, replaceSection(doc, name, body));
  return path;
}

/** The short commit and the date (YYYY-MM-DD) a result is stamped with. */
export function runStamp(): { commit: string; date: string } {
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    // not a git checkout
  }
  return { commit, date: new Date().toISOString().slice(0, 10) };
}
