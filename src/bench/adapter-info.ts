/** The adapter a run used, read off the kernel runtime, for run metadata. */
import type { KernelRuntime } from '../kernels/runtime.js';
import type { AdapterMetadata } from './run-metadata.js';

export function adapterMetadata(rt: KernelRuntime): AdapterMetadata {
  const info = rt.ctx.adapterInfo;
  return {
    name: rt.adapterName,
    description: info.description || info.device || rt.adapterName,
    vendor: info.vendor,
    architecture: info.architecture,
    f16: rt.hasF16,
  };
}
