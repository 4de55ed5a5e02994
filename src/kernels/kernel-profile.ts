/**
 * Which kernel variants and tile sizes to use (GpuOptions.kernelProfile): 'cpu', tuned for
 * software adapters (a workgroup runs on one core, lanes are SIMD lanes), or 'gpu'; 'auto'
 * picks by the adapter. No Dawn import here, so the CLI can check its flag without loading
 * WebGPU.
 */
import { AutoGlmError } from '../errors.js';

export type KernelProfile = 'cpu' | 'gpu';
export type KernelProfileOption = KernelProfile | 'auto';

/** A profile from a flag or env value (undefined or '' = not given); anything else is invalid_request naming `param`. */
export function parseKernelProfile(value: string | undefined, param: string, label = param): KernelProfileOption | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'auto' || value === 'cpu' || value === 'gpu') return value;
  throw new AutoGlmError('invalid_request', `${label} must be auto, cpu or gpu (got "${value}").`, { param });
}
