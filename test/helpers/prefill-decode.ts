import type { GpuModel } from '../../src/engine/runner/gpu-model.js';
import { ModelRunner } from '../../src/engine/runner/model-runner.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';

/**
 * Logits of every prompt position (one step of prompt rows: the GEMM path), then of one
 * decode step after it (`next`, the GEMV path), on a runner of four 16-token blocks.
 */
export async function prefillAndDecodeLogits(
  rt: KernelRuntime,
  model: GpuModel,
  prompt: number[],
  o: { next: number; blockTable: number[] },
): Promise<Float32Array[]> {
  const runner = new ModelRunner(rt, model, {
    numBlocks: 4,
    blockSize: 16,
    maxRows: 64,
    maxSampleRows: 64,
    countSlots: 1,
    kvDType: rt.preferredDType,
    foldNorms: true,
  });
  try {
    const { blockTable } = o;
    const prefill = await runner.logits([{ tokenIds: prompt, startPosition: 0, blockTable }]);
    return [prefill, await runner.logits([{ tokenIds: [o.next], startPosition: prompt.length, blockTable }])];
  } finally {
    runner.destroy();
  }
}
