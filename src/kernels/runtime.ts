/**
 * The kernel runtime: a device plus everything kernels share (pipelines, buffers, bind
 * groups, the error sink). Small by design; the kernels live beside it, one file each.
 */
import { AutoGlmError } from '../errors.js';
import { BufferPool } from './buffer-pool.js';
import type { DispatchProfiler } from './dispatch-profiler.js';
import { acquireGpu, type GpuContext, type GpuOptions } from './device.js';
import { ErrorSink } from './error-sink.js';
import { nudgeDawnEventPolling } from './event-polling.js';
import { PipelineCache, type Kernel, type KernelSpec } from './pipeline-cache.js';
import { Recorder } from './recorder.js';
import { DTYPE_BYTES, type DType, type GpuTensor } from './tensor.js';

export const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export interface RuntimeOptions extends GpuOptions {
  /** Use f32 even where shader-f16 is available. */
  forceF32?: boolean;
}

type TypedArray = Float32Array | Uint32Array | Int32Array | Uint16Array | Uint8Array;

export class KernelRuntime {
  readonly device: GPUDevice;
  readonly errors: ErrorSink;
  readonly pipelines: PipelineCache;
  /** The activation / KV dtype chosen for this device: f16 when available and not forced off. */
  readonly preferredDType: 'f16' | 'f32';
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  /** Buffers that come and go (staging, per-step tables that grow): see buffer-pool.ts. */
  readonly pool: BufferPool;

  private constructor(
    readonly ctx: GpuContext,
    options: RuntimeOptions,
  ) {
    this.device = ctx.device;
    this.errors = new ErrorSink(this.device, () => ctx.takeUncapturedErrors());
    this.pipelines = new PipelineCache(this.device, this.errors);
    this.preferredDType = ctx.features.f16 && !options.forceF32 ? 'f16' : 'f32';
    this.pool = new BufferPool({
      create: (size, usage, label) => this.createBuffer(size, usage, label),
      destroy: (buffer) => this.destroyBuffer(buffer),
    });
  }

  static async create(options: RuntimeOptions = {}): Promise<KernelRuntime> {
    return new KernelRuntime(await acquireGpu(options), options);
  }

  get adapterName(): string {
    return this.ctx.adapterName;
  }

  get hasF16(): boolean {
    return this.ctx.features.f16;
  }

  /** Largest byte range one storage binding may cover. */
  get maxBindingBytes(): number {
    return this.ctx.limits.maxStorageBufferBindingSize;
  }

  kernel(spec: KernelSpec): Kernel {
    this.ctx.assertAlive();
    return this.pipelines.get(spec);
  }

  /**
   * While set, every dispatch recorded is timed on the device and summed by kernel (one pass
   * per dispatch: profiled work runs a little slower). Attach, run the work, read, detach.
   */
  profiler: DispatchProfiler | null = null;

  recorder(): Recorder {
    this.ctx.assertAlive();
    return new Recorder(this);
  }

  bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) {
      id = this.nextBufferId++;
      this.bufferIds.set(buffer, id);
    }
    return id;
  }

  /** Bind groups held for reuse (each a native object; the recorder keeps them shape-independent). */
  get cachedBindGroups(): number {
    return this.bindGroups.size;
  }

  /** Bind groups are cached by (layout, buffer ranges): recreating one per dispatch costs more than the dispatch. */
  bindGroup(layout: GPUBindGroupLayout, layoutKey: string, entries: { buffer: GPUBuffer; offset: number; size: number }[]): GPUBindGroup {
    let key = layoutKey;
    for (const e of entries) key += `|${this.bufferId(e.buffer)}@${e.offset}+${e.size}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      bg = this.device.createBindGroup({
        layout,
        entries: entries.map((e, binding) => ({ binding, resource: { buffer: e.buffer, offset: e.offset, size: e.size } })),
      });
      if (this.bindGroups.size > 20000) this.bindGroups.clear();
      this.bindGroups.set(key, bg);
    }
    return bg;
  }

  /** Forget bind groups that reference a buffer about to be destroyed. */
  private forgetBuffer(buffer: GPUBuffer): void {
    const id = this.bufferIds.get(buffer);
    if (id === undefined) return;
    const needle = `|${id}@`;
    for (const key of this.bindGroups.keys()) if (key.includes(needle)) this.bindGroups.delete(key);
  }

  createBuffer(byteLength: number, usage: number = STORAGE_USAGE, label?: string): GPUBuffer {
    this.ctx.assertAlive();
    const size = Math.max(16, Math.ceil(byteLength / 16) * 16);
    if (size > this.ctx.limits.maxBufferSize) {
      throw new AutoGlmError(
        'gpu_out_of_memory',
        `buffer ${label ?? ''} of ${size} bytes exceeds this adapter's maxBufferSize (${this.ctx.limits.maxBufferSize})`,
      );
    }
    return this.errors.capture(`allocating ${size} bytes${label ? ` for ${label}` : ''}`, () =>
      this.device.createBuffer({ size, usage, label }),
    );
  }

  /** A new storage tensor (contents undefined until written). */
  tensor(dtype: DType, length: number, label?: string): GpuTensor {
    const buffer = this.createBuffer(length * DTYPE_BYTES[dtype], STORAGE_USAGE, label);
    return { buffer, byteOffset: 0, length, dtype };
  }

  /**
   * A storage tensor from the buffer pool (contents undefined until written), for buffers
   * replaced often; hand it back with releaseTensor once no later work will use it.
   */
  pooledTensor(dtype: DType, length: number, label?: string): GpuTensor {
    const buffer = this.pool.acquire(length * DTYPE_BYTES[dtype], STORAGE_USAGE, label);
    return { buffer, byteOffset: 0, length, dtype };
  }

  /**
   * Gives a pooledTensor back. Work already submitted may still read it (see buffer-pool.ts);
   * work recorded but not yet submitted must not.
   */
  releaseTensor(t: GpuTensor): void {
    this.pool.release(t.buffer);
  }

  /** A storage tensor holding `data` (f16 data is passed as its raw Uint16Array bits). */
  upload(dtype: DType, data: TypedArray, label?: string): GpuTensor {
    const elementBytes = DTYPE_BYTES[dtype];
    const length = data.byteLength / elementBytes;
    const t = this.tensor(dtype, length, label);
    this.write(t, data);
    return t;
  }

  write(t: GpuTensor, data: TypedArray, elementOffset = 0): void {
    this.ctx.assertAlive();
    const byteOffset = t.byteOffset + elementOffset * DTYPE_BYTES[t.dtype];
    // writeBuffer needs sizes in multiples of 4 bytes
    if (data.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(t.buffer, byteOffset, padded);
    } else {
      this.device.queue.writeBuffer(t.buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength);
    }
  }

  /** Copies `byteLength` bytes from a buffer to the host, after all submitted work. */
  async readBytes(buffer: GPUBuffer, byteOffset: number, byteLength: number): Promise<ArrayBuffer> {
    this.ctx.assertAlive();
    const size = Math.ceil(byteLength / 4) * 4;
    const staging = this.pool.acquire(size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'staging');
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
      this.device.queue.submit([enc.finish()]);
      try {
        await this.errors.flush();
        const mapped = staging.mapAsync(GPUMapMode.READ, 0, size);
        nudgeDawnEventPolling();
        await mapped;
      } catch (e) {
        this.ctx.assertAlive();
        throw e instanceof AutoGlmError
          ? e
          : new AutoGlmError('gpu_validation_error', `readback failed: ${(e as Error).message}`, { cause: e });
      }
      const copy = staging.getMappedRange(0, size).slice(0, byteLength);
      staging.unmap();
      return copy;
    } finally {
      // a buffer left mapped or pending (a failed read) is destroyed by the pool, not reused
      if (!this.ctx.isDestroyed) this.pool.release(staging);
    }
  }

  async read(t: GpuTensor, start = 0, length = t.length - start): Promise<Float32Array | Uint32Array | Int32Array | Uint16Array> {
    const bytes = await this.readBytes(t.buffer, t.byteOffset + start * DTYPE_BYTES[t.dtype], length * DTYPE_BYTES[t.dtype]);
    switch (t.dtype) {
      case 'f32':
        return new Float32Array(bytes);
      case 'u32':
        return new Uint32Array(bytes);
      case 'i32':
        return new Int32Array(bytes);
      case 'f16':
        return new Uint16Array(bytes);
    }
  }

  /** Reads any float tensor as f32 values (f16 converted on the host). */
  async readFloats(t: GpuTensor, start = 0, length = t.length - start): Promise<Float32Array> {
    const raw = await this.read(t, start, length);
    if (raw instanceof Float32Array) return raw;
    if (t.dtype === 'f16') return f16BitsToF32(raw as Uint16Array);
    throw new TypeError(`readFloats of a ${t.dtype} tensor`);
  }

  /** Waits for all submitted work; throws any pending GPU error. */
  async sync(): Promise<void> {
    this.ctx.assertAlive();
    const done = this.device.queue.onSubmittedWorkDone();
    nudgeDawnEventPolling();
    await done;
    await this.errors.flush();
    this.ctx.assertAlive();
  }

  destroyBuffer(buffer: GPUBuffer): void {
    this.forgetBuffer(buffer);
    buffer.destroy();
  }

  destroy(): void {
    this.pool.clear();
    this.bindGroups.clear();
    this.ctx.destroy();
  }
}

const f16Scratch = new DataView(new ArrayBuffer(4));

/** IEEE half bits -> float32. */
export function f16BitsToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfToFloat(bits[i]!);
  return out;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** float -> IEEE half bits, round to nearest even. */
export function floatToHalf(v: number): number {
  f16Scratch.setFloat32(0, v, true);
  const x = f16Scratch.getUint32(0, true);
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

export function f32ToF16Bits(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]!);
  return out;
}
