/**
 * One compiled pipeline per (shader, defines, entry point): compiled once, reused forever.
 *
 * Layouts are explicit rather than 'auto' so that the params uniform can use a dynamic
 * offset: per-dispatch parameters live in one arena buffer, and a bind group can then be
 * reused across steps while only the offset changes.
 */
import type { Defines } from './shader-source.js';
import { expandShader, loadShader } from './shader-source.js';
import type { ErrorSink } from './error-sink.js';

/** How a kernel sees each binding of group 0, in binding order. */
export type BindingKind = 'read' | 'write' | 'uniform';

export interface KernelSpec {
  /** File name in shaders/, without `.wgsl`. */
  shader: string;
  /** Inline WGSL used instead of the file (tests of the runtime itself). */
  source?: string;
  entryPoint?: string;
  defines?: Defines;
  /**
   * More defines, computed only when the pipeline is compiled: WGSL written out by the
   * wrapper (a register block, an unrolled loop) that `defines` already determines. They stay
   * out of the key, so a cache hit costs neither building the code nor hashing it (the
   * GEMM's block is several KB; rebuilding it per dispatch cost ~2 ms of a decode step).
   */
  generated?: () => Defines;
  /** group(0) bindings 0..n-1. */
  bindings: readonly BindingKind[];
  /** When true, group(1) binding(0) is a `var<uniform>` params struct (<= 256 bytes). */
  params?: boolean;
}

export interface Kernel {
  readonly key: string;
  /** Small unique number of this pipeline (bind-group cache keys use it, not the key). */
  readonly id: number;
  readonly spec: KernelSpec;
  readonly pipeline: GPUComputePipeline;
  readonly bufferLayout: GPUBindGroupLayout;
  readonly paramsLayout: GPUBindGroupLayout | null;
}

/**
 * The one place a pipeline key is derived, so no kernel writes its own. It runs for every
 * dispatch, so it is a plain concatenation in the defines' own order (sorting them cost
 * about 1 ms of a 126-dispatch decode step's recording); each wrapper builds its defines in
 * a fixed order, and the same defines in another order would only compile one more pipeline.
 */
export function kernelKey(spec: KernelSpec): string {
  let key = `${spec.shader}:${spec.entryPoint ?? 'main'}:${spec.bindings.join('')}:${spec.params ? 'p' : ''}:`;
  const defines = spec.defines;
  if (defines) for (const k in defines) key += `${k}=${defines[k]},`;
  return key;
}

export const PARAMS_SLOT_BYTES = 256;

export class PipelineCache {
  private readonly kernels = new Map<string, Kernel>();
  private nextId = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly errors: ErrorSink,
  ) {}

  get size(): number {
    return this.kernels.size;
  }

  get(spec: KernelSpec): Kernel {
    const key = kernelKey(spec);
    let k = this.kernels.get(key);
    if (!k) {
      k = this.compile(spec, key);
      this.kernels.set(key, k);
    }
    return k;
  }

  private compile(spec: KernelSpec, key: string): Kernel {
    const device = this.device;
    const defines = { ...spec.defines, ...spec.generated?.() };
    const code = spec.source !== undefined ? expandShader(spec.source, defines) : loadShader(spec.shader, defines);
    return this.errors.capture(`compiling ${key}`, () => {
      const module = device.createShaderModule({ code, label: key });
      this.errors.watchCompilation(module, key);
      const bufferLayout = device.createBindGroupLayout({
        label: `${key}/buffers`,
        entries: spec.bindings.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind === 'read' ? 'read-only-storage' : kind === 'write' ? 'storage' : 'uniform' },
        })),
      });
      const paramsLayout = spec.params
        ? device.createBindGroupLayout({
            label: `${key}/params`,
            entries: [
              {
                binding: 0,
                visibility: GPUShaderStage.COMPUTE,
                buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: 0 },
              },
            ],
          })
        : null;
      const layout = device.createPipelineLayout({
        bindGroupLayouts: paramsLayout ? [bufferLayout, paramsLayout] : [bufferLayout],
      });
      const pipeline = device.createComputePipeline({
        label: key,
        layout,
        compute: { module, entryPoint: spec.entryPoint ?? 'main' },
      });
      return { key, id: this.nextId++, spec, pipeline, bufferLayout, paramsLayout };
    });
  }
}
