/**
 * Records a whole sequence of kernels into one command buffer with one submit.
 *
 * Per-dispatch parameters (shapes, strides, scalars) go into one params arena: each
 * dispatch gets a 256-byte slot, the arena is written with a single writeBuffer just
 * before submit, and dispatches bind it at a dynamic offset. So a forward step costs one
 * writeBuffer and one submit however many kernels it runs, and bind groups stay cached.
 */
import type { DispatchProfiler } from './dispatch-profiler.js';
import type { BindingKind, Kernel } from './pipeline-cache.js';
import { PARAMS_SLOT_BYTES } from './pipeline-cache.js';
import type { Params } from './params.js';
import type { KernelRuntime } from './runtime.js';
import { DTYPE_BYTES, type GpuTensor } from './tensor.js';

/** A binding: a whole tensor, or an explicit byte range of a buffer. */
export type Binding = GpuTensor | { buffer: GPUBuffer; offset: number; size: number };

const arenas = new WeakMap<KernelRuntime, { buffer: GPUBuffer; slots: number }>();

function bindingRange(b: Binding): { buffer: GPUBuffer; offset: number; size: number } {
  if ('dtype' in b) {
    const size = Math.max(4, Math.ceil((b.length * DTYPE_BYTES[b.dtype]) / 4) * 4);
    return { buffer: b.buffer, offset: b.byteOffset, size: Math.min(size, b.buffer.size - b.byteOffset) };
  }
  return b;
}

/**
 * Storage bindings run to the end of their buffer (within the binding limit) rather than
 * the tensor's exact length: kernels take their shapes from params, never arrayLength, so
 * the result is the same, but the bind group no longer depends on how many rows this step
 * has. With exact ranges a server created new bind groups for every new step shape (each a
 * native Dawn / Vulkan object) until the cache reached its cap: on lavapipe 2,000-3,700
 * over the first 2,500 demo-model requests, and the process's memory rose with them. A
 * buffer bound twice in one dispatch keeps exact ranges (widened, two writable ranges would
 * overlap, which WebGPU refuses); uniform bindings keep theirs (a smaller limit).
 */
function widenStorageRanges(
  ranges: { buffer: GPUBuffer; offset: number; size: number }[],
  kinds: readonly BindingKind[],
  maxBindingBytes: number,
): { buffer: GPUBuffer; offset: number; size: number }[] {
  return ranges.map((r, i) => {
    if (kinds[i] === 'uniform' || ranges.some((other, j) => j !== i && other.buffer === r.buffer)) return r;
    const size = Math.floor(Math.min(r.buffer.size - r.offset, maxBindingBytes) / 4) * 4;
    return size > r.size ? { buffer: r.buffer, offset: r.offset, size } : r;
  });
}

export class Recorder {
  private readonly encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private paramBytes = new Uint8Array(PARAMS_SLOT_BYTES * 64);
  private paramSlots = 0;
  /** Arena buffers bound by this recording (more than one if the arena grew meanwhile). */
  private readonly arenasUsed = new Set<GPUBuffer>();
  private submitted = false;
  /** Profilers that timed dispatches of this recording (usually none). */
  private readonly profilers = new Set<DispatchProfiler>();
  dispatchCount = 0;

  constructor(private readonly rt: KernelRuntime) {
    this.encoder = rt.device.createCommandEncoder();
  }

  /**
   * Records one dispatch. `workgroups` is the grid; callers compute it from their shapes.
   */
  dispatch(kernel: Kernel, bindings: readonly Binding[], params: Params | null, workgroups: readonly [number, number?, number?]): void {
    if (this.submitted) throw new Error('recorder already submitted');
    if (bindings.length !== kernel.spec.bindings.length) {
      throw new Error(`${kernel.key}: expected ${kernel.spec.bindings.length} bindings, got ${bindings.length}`);
    }
    const [x, y = 1, z = 1] = workgroups;
    const maxGroups = this.rt.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxGroups || y > maxGroups || z > maxGroups) {
      throw new Error(`${kernel.key}: workgroup grid ${x}x${y}x${z} exceeds ${maxGroups} per dimension`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    // profiling: this dispatch alone in a pass with timestamps (see DispatchProfiler)
    const profiler = this.rt.profiler;
    const stamps = profiler?.passTimestamps(kernel.spec.shader) ?? null;
    if (stamps) {
      this.endPass();
      // resolved at submit even if the profiler is detached from the runtime by then
      this.profilers.add(profiler!);
    }
    const pass = stamps ? (this.pass = this.encoder.beginComputePass({ timestampWrites: stamps })) : this.computePass();
    pass.setPipeline(kernel.pipeline);
    const ranges = widenStorageRanges(bindings.map(bindingRange), kernel.spec.bindings, this.rt.maxBindingBytes);
    pass.setBindGroup(0, this.rt.bindGroup(kernel.bufferLayout, `k${kernel.id}`, ranges));
    if (kernel.paramsLayout) {
      if (!params) throw new Error(`${kernel.key}: kernel takes params`);
      const slot = this.pushParams(params);
      pass.setBindGroup(1, this.paramsBindGroup(kernel), [slot * PARAMS_SLOT_BYTES]);
    }
    pass.dispatchWorkgroups(x, y, z);
    this.dispatchCount++;
    if (stamps) this.endPass();
  }

  copy(src: Binding, dst: Binding, byteLength?: number): void {
    const s = bindingRange(src);
    const d = bindingRange(dst);
    this.endPass();
    this.encoder.copyBufferToBuffer(s.buffer, s.offset, d.buffer, d.offset, byteLength ?? Math.min(s.size, d.size));
  }

  /** Ends recording, uploads the params arena, submits, and surfaces any GPU error. */
  async submit(): Promise<void> {
    this.submitSync();
    await this.rt.errors.flush();
    this.rt.ctx.assertAlive();
  }

  /** Submits without waiting for error reports (they surface at the next flush). */
  submitSync(): void {
    if (this.submitted) throw new Error('recorder already submitted');
    this.submitted = true;
    this.endPass();
    for (const profiler of this.profilers) profiler.resolveInto(this.encoder);
    for (const buffer of this.arenasUsed) {
      // an arena outgrown mid-recording only serves the slots that fit in it
      const bytes = Math.min(this.paramSlots * PARAMS_SLOT_BYTES, buffer.size);
      this.rt.device.queue.writeBuffer(buffer, 0, this.paramBytes.buffer, 0, bytes);
    }
    this.rt.errors.capture('submitting a command buffer', () => this.rt.device.queue.submit([this.encoder.finish()]));
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private pushParams(p: Params): number {
    const slot = this.paramSlots++;
    if ((slot + 1) * PARAMS_SLOT_BYTES > this.paramBytes.length) {
      const grown = new Uint8Array(this.paramBytes.length * 2);
      grown.set(this.paramBytes);
      this.paramBytes = grown;
    }
    this.paramBytes.set(new Uint8Array(p.bytes, 0, p.byteLength), slot * PARAMS_SLOT_BYTES);
    return slot;
  }

  /**
   * The arena is shared by all recorders of a runtime. Work is ordered on the queue, so a
   * later submit's writeBuffer cannot overwrite params an earlier submit still reads:
   * writeBuffer is itself a queue operation executed after the earlier submission.
   */
  private arena(slots: number): { buffer: GPUBuffer; slots: number } {
    let a = arenas.get(this.rt);
    if (!a || a.slots < slots) {
      const newSlots = Math.max(1024, 1 << Math.ceil(Math.log2(slots)));
      a = {
        buffer: this.rt.createBuffer(newSlots * PARAMS_SLOT_BYTES, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'params-arena'),
        slots: newSlots,
      };
      arenas.set(this.rt, a);
    }
    return a;
  }

  private paramsBindGroup(kernel: Kernel): GPUBindGroup {
    // grow before binding so that this dispatch's slot fits
    const a = this.arena(this.paramSlots);
    this.arenasUsed.add(a.buffer);
    return this.rt.bindGroup(kernel.paramsLayout!, `k${kernel.id}/params`, [{ buffer: a.buffer, offset: 0, size: PARAMS_SLOT_BYTES }]);
  }
}
