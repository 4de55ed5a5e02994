/**
 * A pool of GPU buffers by usage and size class, for buffers that come and go while a
 * device lives: readback staging buffers (one per read), and per-step buffers that grow
 * with the batch (attention work lists, sampling parameters). Creating a buffer is a
 * driver allocation plus Dawn's lazy zeroing on first use; taking one from the pool is a
 * map look-up.
 *
 * Reuse is safe without waiting for the GPU: every write (queue.writeBuffer) and every
 * dispatch goes through the device's one queue, in order, so new contents never reach a
 * buffer before the work submitted earlier has read it. Mapped buffers are never pooled.
 */
export interface BufferPoolStats {
  /** Buffers created because no free one of the class was there. */
  created: number;
  /** Requests served from the pool. */
  reused: number;
  /** Free buffers held, and their bytes. */
  retained: number;
  retainedBytes: number;
}

export interface BufferPoolOptions {
  /** Creates a buffer of exactly `size` bytes (the runtime's createBuffer: typed errors, limits). */
  create(size: number, usage: number, label: string | undefined): GPUBuffer;
  /** Destroys a buffer the pool lets go (the runtime's destroyBuffer, which also drops its bind groups). */
  destroy(buffer: GPUBuffer): void;
  /** Free bytes kept at most; a release past it destroys the buffer (default 256 MiB). */
  maxRetainedBytes?: number;
  /** Free buffers kept at most per (usage, size class) (default 8). */
  maxPerClass?: number;
}

/** Smallest size class, in bytes. */
const MIN_CLASS_BYTES = 256;

/**
 * The size class of a request: the next of 2^k x {1, 1.25, 1.5, 1.75} (at least 256 bytes),
 * so a pooled buffer wastes at most a quarter of its size, where powers of two alone would
 * waste up to half, and a buffer that grows by small steps still finds its class again.
 */
export function bufferSizeClass(byteLength: number): number {
  if (!(byteLength >= 0) || !Number.isFinite(byteLength))
    throw new RangeError(`buffer size must be a finite number >= 0, got ${byteLength}`);
  if (byteLength <= MIN_CLASS_BYTES) return MIN_CLASS_BYTES;
  const octave = 2 ** Math.floor(Math.log2(byteLength));
  for (const step of [1, 1.25, 1.5, 1.75]) {
    const size = octave * step;
    if (size >= byteLength) return size;
  }
  return 2 * octave;
}

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly classOf = new WeakMap<GPUBuffer, string>();
  private readonly maxRetainedBytes: number;
  private readonly maxPerClass: number;
  private counts = { created: 0, reused: 0, retained: 0, retainedBytes: 0 };

  constructor(private readonly options: BufferPoolOptions) {
    this.maxRetainedBytes = options.maxRetainedBytes ?? 256 * 1024 * 1024;
    this.maxPerClass = options.maxPerClass ?? 8;
  }

  /** A buffer of at least `byteLength` bytes with exactly `usage`; give it back with release(). */
  acquire(byteLength: number, usage: number, label?: string): GPUBuffer {
    const size = bufferSizeClass(byteLength);
    const key = `${usage}:${size}`;
    const reused = this.free.get(key)?.pop();
    if (reused !== undefined) {
      this.counts.reused++;
      this.counts.retained--;
      this.counts.retainedBytes -= size;
      return reused;
    }
    const buffer = this.options.create(size, usage, label);
    this.classOf.set(buffer, key);
    this.counts.created++;
    return buffer;
  }

  /**
   * A per-step buffer kept from one step to the next (sampling parameters, logit biases,
   * token masks): `held`, the previous step's, while it has room for `needed` units; else
   * it goes back and one with room for at least twice as many (and `minUnits`) is taken.
   * Writing the held buffer again needs no wait, for the reason in the header.
   */
  regrow(
    held: { readonly capacity: number; readonly buffer: GPUBuffer } | null | undefined,
    needed: number,
    unitBytes: number,
    minUnits: number,
    usage: number,
    label: string,
  ): { capacity: number; buffer: GPUBuffer } {
    if (held && held.capacity >= needed) return { capacity: held.capacity, buffer: held.buffer };
    if (held) this.release(held.buffer);
    const capacity = Math.max(needed, minUnits, 2 * (held?.capacity ?? 0));
    return { capacity, buffer: this.acquire(capacity * unitBytes, usage, label) };
  }

  /**
   * Returns a buffer from acquire() for reuse (or destroys it when the pool is full, or it
   * is still mapped). The caller must not touch it afterwards, and every command buffer
   * that uses it must already be submitted: a recorder still open could otherwise run
   * after the next owner's queue writes.
   */
  release(buffer: GPUBuffer): void {
    const key = this.classOf.get(buffer);
    if (key === undefined) throw new Error('BufferPool.release: the buffer did not come from this pool');
    const list = this.free.get(key) ?? [];
    if (list.includes(buffer)) throw new Error('BufferPool.release: the buffer was released twice');
    const fits = this.counts.retainedBytes + buffer.size <= this.maxRetainedBytes && list.length < this.maxPerClass;
    if (!fits || buffer.mapState !== 'unmapped') {
      this.classOf.delete(buffer);
      this.options.destroy(buffer);
      return;
    }
    list.push(buffer);
    this.free.set(key, list);
    this.counts.retained++;
    this.counts.retainedBytes += buffer.size;
  }

  get stats(): BufferPoolStats {
    return { ...this.counts };
  }

  /** Destroys every free buffer (buffers still out stay the callers'). */
  clear(): void {
    for (const list of this.free.values()) for (const b of list) this.options.destroy(b);
    this.free.clear();
    this.counts.retained = 0;
    this.counts.retainedBytes = 0;
  }
}
