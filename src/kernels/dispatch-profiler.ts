/**
 * Opt-in GPU time per kernel: while a profiler is attached to a runtime, every dispatch a
 * Recorder makes runs in a compute pass of its own with timestamp writes at its start and
 * end, and the time is summed by kernel (the shader's name). Where the time of a forward
 * step goes, measured on the device rather than guessed from wall clocks.
 *
 * One pass per dispatch adds a little per dispatch (on lavapipe about what an empty pass
 * costs), so a profiled step runs somewhat slower than an unprofiled one: read the shares,
 * not the sum, as what an unprofiled step spends. Needs the timestamp-query feature.
 */
import type { KernelRuntime } from './runtime.js';

/** Timestamp queries one profiler holds: WebGPU's largest query set (2 per dispatch). */
const MAX_QUERIES = 4096;
/** resolveQuerySet's destination offset alignment (256 bytes) in 8-byte queries. */
const RESOLVE_ALIGN_QUERIES = 32;

export interface KernelTime {
  /** The shader (gemv, matmul, attention-decode-dims, ...). */
  kernel: string;
  dispatches: number;
  /** GPU time summed over its dispatches. */
  ms: number;
}

export class DispatchProfiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private readonly labels: string[] = [];
  /** Queries already resolved into `resolve` (each recorder resolves what it wrote). */
  private resolved = 0;
  /** Dispatches that came after the query set was full: recorded, not timed. */
  untimed = 0;

  constructor(private readonly rt: KernelRuntime) {
    if (!rt.ctx.features.timestampQuery) throw new Error('DispatchProfiler needs the timestamp-query feature, which this device lacks');
    this.querySet = rt.device.createQuerySet({ type: 'timestamp', count: MAX_QUERIES });
    this.resolve = rt.device.createBuffer({ size: MAX_QUERIES * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  }

  /** Dispatches timed so far. */
  get dispatches(): number {
    return this.labels.length;
  }

  /** The timestamp writes for the next dispatch's own pass, or null (not timed) once the query set is full. */
  passTimestamps(kernel: string): GPUComputePassTimestampWrites | null {
    const i = this.labels.length;
    if (2 * i + 2 > MAX_QUERIES) {
      this.untimed++;
      return null;
    }
    this.labels.push(kernel);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Called by a recorder before it finishes its command buffer: resolves the queries it wrote. */
  resolveInto(encoder: GPUCommandEncoder): void {
    const end = 2 * this.labels.length;
    if (end === this.resolved) return;
    // the destination offset must be a multiple of 256 bytes: start at the aligned query
    // below (resolving a query again gives the same value)
    const start = Math.floor(this.resolved / RESOLVE_ALIGN_QUERIES) * RESOLVE_ALIGN_QUERIES;
    encoder.resolveQuerySet(this.querySet, start, end - start, this.resolve, start * 8);
    this.resolved = end;
  }

  /** Reads the timestamps back (after the profiled work was submitted) and sums them by kernel, largest first. */
  async read(): Promise<KernelTime[]> {
    const bytes = this.resolved * 8;
    if (bytes === 0) return [];
    const readback = this.rt.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      const enc = this.rt.device.createCommandEncoder();
      enc.copyBufferToBuffer(this.resolve, 0, readback, 0, bytes);
      this.rt.device.queue.submit([enc.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      const stamps = new BigUint64Array(readback.getMappedRange().slice(0));
      readback.unmap();
      const byKernel = new Map<string, KernelTime>();
      for (let i = 0; 2 * i + 1 < this.resolved; i++) {
        const kernel = this.labels[i]!;
        const t = byKernel.get(kernel) ?? { kernel, dispatches: 0, ms: 0 };
        const ns = stamps[2 * i + 1]! - stamps[2 * i]!;
        // a pair the device did not write (or wrote out of order) reads as 0 or wraps: skip it
        if (ns > 0n && ns < 60_000_000_000n) t.ms += Number(ns) / 1e6;
        t.dispatches++;
        byKernel.set(kernel, t);
      }
      return [...byKernel.values()].sort((a, b) => b.ms - a.ms);
    } finally {
      readback.destroy();
    }
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolve.destroy();
  }
}
