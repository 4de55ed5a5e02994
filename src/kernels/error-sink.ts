/**
 * Turns Dawn's asynchronous error reporting into typed errors at well-defined points.
 *
 * WebGPU reports validation and out-of-memory errors through error scopes whose results
 * arrive later. Synchronous calls (pipeline and buffer creation, command recording) push a
 * scope, and the pending result is kept here; `flush()` (called by every submit and
 * readback) awaits them and throws the first error as an AutoGlmError carrying Dawn's
 * message, WGSL compiler messages included.
 */
import { AutoGlmError } from '../errors.js';
import { nudgeDawnEventPolling } from './event-polling.js';

export class ErrorSink {
  private pending: Promise<AutoGlmError | null>[] = [];

  constructor(private readonly device: GPUDevice) {}

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
    if (this.pending.length === 0) return;
    const pending = this.pending;
    this.pending = [];
    nudgeDawnEventPolling();
    const results = await Promise.all(pending);
    const first = results.find((r) => r !== null);
    if (first) throw first;
  }
}
