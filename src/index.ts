/** The library entry point: `import { Engine } from 'open-autoglm'`. */
export { Engine } from './engine/engine.js';
export type * from './engine/types.js';
export { AutoGlmError, ERROR_CATALOGUE, isAutoGlmError, type ErrorCode } from './errors.js';
export { DispatchProfiler, type KernelTime } from './kernels/dispatch-profiler.js';
