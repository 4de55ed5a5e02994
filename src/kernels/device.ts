/**
 * Device acquisition through Dawn's Node bindings (npm `webgpu`).
 *
 * Two Dawn facts shape this file:
 * - Without `requiredLimits`, Dawn hands out the WebGPU defaults (256 MiB buffers, 128 MiB
 *   bindings, 8 storage buffers per stage) whatever the adapter can do, so we always ask
 *   for the adapter's own limits.
 * - The object returned by `create()` must stay strongly referenced while any adapter or
 *   device lives: when it is garbage collected Dawn crashes the process. The instances
 *   live in a module-level map for the life of the process (dawnInstance), one per set of
 *   flags, reused by every device.
 */
import { create, globals } from 'webgpu';
import { AutoGlmError } from '../errors.js';
import { EVENT_POLLING_MODES, paceDawnEventPolling, resolveEventPollingMode, type EventPollingMode } from './event-polling.js';
import { parseKernelProfile, type KernelProfile, type KernelProfileOption } from './kernel-profile.js';

export interface GpuOptions {
  /** Dawn backend: 'vulkan', 'metal', 'd3d12', 'null'... Env: AUTOGLM_GPU_BACKEND. */
  backend?: string;
  /** Substring of the adapter name to pick. Env: AUTOGLM_GPU_ADAPTER. */
  adapter?: string;
  /** Request shader-f16 when available (default true). Env AUTOGLM_GPU_F16=0 disables. */
  allowF16?: boolean;
  /** Extra Dawn toggles, e.g. 'disable_robustness'. Env: AUTOGLM_DAWN_TOGGLES (comma list). */
  dawnToggles?: string[];
  /**
   * How to wait for the GPU: 'spin' (Dawn's own back-to-back polling, one busy core per
   * wait), 'paced' (short spin, then a poll per millisecond), or 'auto' (default: paced on
   * CPU adapters, where a spinning thread slows the shaders; see event-polling.ts).
   * Env: AUTOGLM_GPU_EVENT_POLLING.
   */
  eventPolling?: EventPollingMode;
  /**
   * Which kernel variants and tile sizes to use (kernel-profile.ts); 'auto' (default) picks
   * by the adapter. 'gpu' on lavapipe runs the GPU code path on a machine without a GPU (the
   * tests check it against the float64 reference). Env: AUTOGLM_KERNEL_PROFILE.
   */
  kernelProfile?: KernelProfileOption;
}

export interface GpuFeatures {
  f16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
}

/** Errors that arrived outside any error scope (Dawn's uncaptured errors). */
export interface UncapturedError {
  kind: 'validation' | 'out-of-memory' | 'internal';
  message: string;
}

// GPUBufferUsage, GPUMapMode, GPUValidationError... are globals in a browser; Dawn's Node
// binding exports them instead.
Object.assign(globalThis, globals);

const liveContexts = new Set<GpuContext>();

export class GpuContext {
  readonly adapterName: string;
  readonly adapterInfo: { vendor: string; architecture: string; device: string; description: string };
  readonly features: GpuFeatures;
  readonly limits: GPUSupportedLimits;
  /** Set when the device is lost; every later operation throws gpu_device_lost. */
  lostReason: string | null = null;
  /** Uncaptured errors not yet taken by takeUncapturedErrors (the first 100). */
  private unreported: UncapturedError[] = [];
  private destroyed = false;
  /** Ends this context's share of event-polling pacing (see event-polling.ts), if it took one. */
  private releasePacing: (() => void) | null = null;
  /** The kernel variants and tilings to use (GpuOptions.kernelProfile). */
  readonly kernelProfile: KernelProfile;

  constructor(
    /** Kept only so that Dawn's GPU object outlives the device (see the file comment). */
    private readonly gpu: GPU,
    readonly adapter: GPUAdapter,
    readonly device: GPUDevice,
    kernelProfile: KernelProfileOption = 'auto',
  ) {
    const info = adapter.info;
    this.adapterInfo = {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
    };
    this.adapterName = info.description || info.device || info.vendor || 'unknown adapter';
    this.features = {
      f16: device.features.has('shader-f16'),
      subgroups: device.features.has('subgroups'),
      timestampQuery: device.features.has('timestamp-query'),
    };
    this.limits = device.limits;
    this.kernelProfile = kernelProfile === 'auto' ? (this.isCpuAdapter ? 'cpu' : 'gpu') : kernelProfile;
    device.lost.then((info) => {
      if (!this.destroyed) this.lostReason = `${info.reason}: ${info.message}`;
    });
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      const e = ev.error;
      const kind = e instanceof GPUOutOfMemoryError ? 'out-of-memory' : e instanceof GPUValidationError ? 'validation' : 'internal';
      if (this.unreported.length < 100) this.unreported.push({ kind, message: e.message });
    };
  }

  /**
   * The uncaptured errors that arrived since the last call. Work outside an error scope
   * (queue writes, submits) reports its failures only this way; the runtime's error sink
   * takes them at every flush so that they fail the operation that waited, as typed errors.
   */
  takeUncapturedErrors(): UncapturedError[] {
    const taken = this.unreported;
    this.unreported = [];
    return taken;
  }

  /** True for software adapters (lavapipe/llvmpipe, SwiftShader) that run shaders on the CPU. */
  get isCpuAdapter(): boolean {
    const info = this.adapterInfo;
    return /llvmpipe|lavapipe|swiftshader/i.test(`${info.description} ${info.device} ${info.architecture}`);
  }

  /** Applies an event-polling mode for the life of this context. */
  setEventPolling(mode: EventPollingMode): void {
    this.releasePacing?.();
    this.releasePacing = resolveEventPollingMode(mode, this.isCpuAdapter) === 'paced' ? paceDawnEventPolling() : null;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /** Throws gpu_device_lost if the device is gone; call before any GPU work. */
  assertAlive(): void {
    if (this.destroyed) throw new AutoGlmError('gpu_device_lost', 'the GPU device was destroyed');
    if (this.lostReason !== null) throw new AutoGlmError('gpu_device_lost', `the GPU device was lost (${this.lostReason})`);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.device.destroy();
    this.releasePacing?.();
    this.releasePacing = null;
    liveContexts.delete(this);
    // `this.gpu` is dropped with the context; referenced here so the field is not "unused".
    void this.gpu;
  }
}

function envList(name: string): string[] {
  const v = process.env[name];
  return v
    ? v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

const NO_ADAPTER_HELP =
  'No WebGPU adapter was found. Open-AutoGLM needs a Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver. ' +
  'On a Linux machine without a GPU, install Mesa >= 24 lavapipe: `bash scripts/setup-vulkan.sh` (Debian bookworm takes it from bookworm-backports).';

/** Limits we raise to the adapter's maximum rather than keep Dawn's defaults. */
const RAISED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxUniformBufferBindingSize',
  'maxBindGroups',
] as const;

/**
 * One Dawn instance per set of flags for the life of the process. Every `create()` builds a
 * new Vulkan instance, and with lavapipe each one that is dropped after its device was
 * destroyed still leaves a memfd and a few MB behind (measured: one memfd and 3-5 MB of RSS
 * per KernelRuntime create/destroy cycle, garbage collection or not), so an app that loads
 * and closes engines would leak; and an instance that is never dropped cannot be collected
 * while an adapter from it lives (the crash in this file's header).
 */
const dawnInstances = new Map<string, GPU>();

function dawnInstance(flags: readonly string[]): GPU {
  const key = flags.join('\n');
  let gpu = dawnInstances.get(key);
  if (!gpu) {
    gpu = create([...flags]);
    dawnInstances.set(key, gpu);
  }
  return gpu;
}

export async function acquireGpu(options: GpuOptions = {}): Promise<GpuContext> {
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp'; // quiets a Mesa warning
  const backend = options.backend ?? process.env.AUTOGLM_GPU_BACKEND;
  const adapterName = options.adapter ?? process.env.AUTOGLM_GPU_ADAPTER;
  const allowF16 = options.allowF16 ?? process.env.AUTOGLM_GPU_F16 !== '0';
  const toggles = [...(options.dawnToggles ?? []), ...envList('AUTOGLM_DAWN_TOGGLES')];
  // checked before any Dawn object exists: a bad value must not leave a device behind
  const polling = eventPollingMode(options.eventPolling ?? process.env.AUTOGLM_GPU_EVENT_POLLING);
  const profile =
    parseKernelProfile(options.kernelProfile ?? process.env.AUTOGLM_KERNEL_PROFILE, 'AUTOGLM_KERNEL_PROFILE', 'The kernel profile') ??
    'auto';

  const flags: string[] = [];
  if (backend) flags.push(`backend=${backend}`);
  if (adapterName) flags.push(`adapter=${adapterName}`);
  if (toggles.length) flags.push(`enable-dawn-features=${toggles.join(',')}`);

  // a filter the user set is the likelier cause of "no adapter" than a missing driver
  const asked = [
    backend ? `backend "${backend}" (AUTOGLM_GPU_BACKEND)` : '',
    adapterName ? `adapter "${adapterName}" (AUTOGLM_GPU_ADAPTER)` : '',
  ]
    .filter(Boolean)
    .join(' and ');
  const help = asked ? `No WebGPU adapter matched the ${asked}. ${NO_ADAPTER_HELP}` : NO_ADAPTER_HELP;
  let gpu: GPU;
  let adapter: GPUAdapter | null;
  try {
    gpu = dawnInstance(flags);
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    throw new AutoGlmError('gpu_unavailable', `${help} (Dawn said: ${(e as Error).message})`, { cause: e });
  }
  if (!adapter) throw new AutoGlmError('gpu_unavailable', help);

  const requiredFeatures: GPUFeatureName[] = [];
  const want: GPUFeatureName[] = ['subgroups', 'timestamp-query'];
  if (allowF16) want.push('shader-f16');
  for (const f of want) if (adapter.features.has(f)) requiredFeatures.push(f);

  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }

  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  } catch (e) {
    throw new AutoGlmError('gpu_unavailable', `The adapter refused to create a device: ${(e as Error).message}`, { cause: e });
  }
  const ctx = new GpuContext(gpu, adapter, device, profile);
  ctx.setEventPolling(polling);
  liveContexts.add(ctx);
  return ctx;
}

function eventPollingMode(value: string | undefined): EventPollingMode {
  if (value === undefined || value === '') return 'auto';
  if ((EVENT_POLLING_MODES as readonly string[]).includes(value)) return value as EventPollingMode;
  throw new AutoGlmError('invalid_request', `GPU event polling must be auto, spin or paced (got "${value}").`, {
    param: 'AUTOGLM_GPU_EVENT_POLLING',
  });
}

/** Destroys every device still alive; for process exit paths. */
export function destroyAllGpus(): void {
  for (const ctx of [...liveContexts]) ctx.destroy();
}
