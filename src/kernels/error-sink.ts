/**
 * Turns Dawn's asynchronous error reporting into typed errors at well-defined points.
 *
 * WebGPU reports validation and out-of-memory errors through error scopes whose results
 * arrive later. Synchronous calls (pipeline and buffer creation, command recording) push a
 * scope, and the pending result is kept here; `flush()` (called by every submit and
 * readback) awaits them and throws the first error as an AutoGlmError carrying Dawn's
 * message, WGSL compiler messages included. Errors from work outside any scope (a queue
 * write to a destroyed buffer, a bad submit) reach Dawn's uncaptured-error event instead;
 * flush() reports those too, so that no GPU error is only logged.
 */
import { AutoGlmError } from '../errors.js';
import type { UncapturedError } from './device.js';
import { nudgeDawnEventPolling } from './event-polling.js';

export class ErrorSink {
  private pending: Promise<AutoGlmError | null>[] = [];

  constructor(
    private readonly device: GPUDevice,
    /** Drains the uncaptured errors that arrived since the last call (GpuContext.takeUncapturedErrors). */
    private readonly takeUncaptured: () => UncapturedError[] = () => [],
  ) {}

  /** Runs `fn` inside validation and out-of-memory scopes; errors surface at the next flush. */
  capture<T>(what: string, fn: () => T): T {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    try {
      return fn();
    } finally {
      const validation = this.device.popErrorScope();
      const oom = this.device.popErrorScope();
      this.pending.push(
        Promise.all([validation, oom]).then(([v, o]) => {
          if (o) return new AutoGlmError('gpu_out_of_memory', `GPU out of memory while ${what}: ${o.message}`);
          if (v) return new AutoGlmError('gpu_validation_error', `GPU validation error while ${what}: ${v.message}`);
          return null;
        }),
      );
    }
  }

  /** Adds the WGSL compiler's error messages, which carry line numbers. */
  watchCompilation(module: GPUShaderModule, label: string): void {
    this.pending.push(
      module.getCompilationInfo().then((info) => {
        const errors = info.messages.filter((m) => m.type === 'error');
        if (errors.length === 0) return null;
        const text = errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('\n');
        return new AutoGlmError('gpu_validation_error', `WGSL compile error in ${label}:\n${text}`);
      }),
    );
  }

  async flush(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    if (pending.length > 0) nudgeDawnEventPolling();
    const results = await Promise.all(pending);
    // drained on every flush, so that an error reported now cannot fail a later operation
    const uncaptured = this.takeUncaptured();
    const first = results.find((r) => r !== null) ?? uncapturedAsError(uncaptured[0]);
    if (first) throw first;
  }
}

function uncapturedAsError(e: UncapturedError | undefined): AutoGlmError | null {
  if (e === undefined) return null;
  if (e.kind === 'out-of-memory') return new AutoGlmError('gpu_out_of_memory', `GPU out of memory: ${e.message}`);
  if (e.kind === 'validation') return new AutoGlmError('gpu_validation_error', `GPU validation error: ${e.message}`);
  return new AutoGlmError('gpu_internal_error', `GPU internal error: ${e.message}`);
}
