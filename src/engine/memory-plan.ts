/**
 * Sizes the engine's GPU memory after the weights are up: KV blocks from a byte budget,
 * batch limits from the binding limits (logits and token counts must each fit one binding).
 */
import { AutoGlmError } from '../errors.js';
import { maxKvBlocks } from '../kernels/kv-write.js';
import type { KernelRuntime } from '../kernels/runtime.js';
import { TokenCounts } from '../kernels/token-counts.js';
import type { ModelSpec } from './model/model-spec.js';
import type { RunnerOptions } from './runner/model-runner.js';
import type { GpuModel } from './runner/gpu-model.js';
import type { EngineOptions } from './types.js';

/** KV budget when none is given: enough for every batch slot at full context, capped. */
export const DEFAULT_KV_CAP_BYTES = 1024 * 1024 * 1024;

export interface MemoryPlan {
  runner: RunnerOptions;
  kvBytes: number;
  kvBytesPerToken: number;
}

export function kvBytesPerToken(spec: Pick<ModelSpec, 'numLayers' | 'numKvHeads' | 'headDim'>, dtypeBytes: number): number {
  return 2 * spec.numLayers * spec.numKvHeads * spec.headDim * dtypeBytes;
}

export function planMemory(rt: KernelRuntime, spec: ModelSpec, _model: GpuModel, options: EngineOptions): MemoryPlan {
  const blockSize = options.kvBlockSize ?? 16;
  if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > 1024) {
    throw new AutoGlmError('invalid_request', `kvBlockSize must be an integer in [1, 1024], got ${blockSize}`, { param: 'kvBlockSize' });
  }
  const kvDType = rt.preferredDType;
  const dtypeBytes = kvDType === 'f16' ? 2 : 4;
  const perToken = kvBytesPerToken(spec, dtypeBytes);

  // logits [rows, vocab] f32 and token counts [slots, vocab] u32 are single bindings
  const byVocab = Math.floor(rt.maxBindingBytes / (4 * spec.vocabSize));
  const maxSeqs = Math.max(1, Math.min(options.maxBatchSequences ?? 64, byVocab, TokenCounts.maxSlots(rt, spec.vocabSize)));
  const maxRows = Math.max(maxSeqs, options.maxBatchTokens ?? 512);
  const contextLength = Math.min(spec.contextLength, options.maxContextTokens ?? Infinity);

  // one sequence at full context must fit, or long requests could never run
  const minBlocks = Math.ceil(contextLength / blockSize);
  const limit = maxKvBlocks(rt, { blockSize, nKvHeads: spec.numKvHeads, headDim: spec.headDim, dtype: kvDType });
  const defaultBlocks = Math.max(minBlocks, Math.min(Math.floor(DEFAULT_KV_CAP_BYTES / (perToken * blockSize)), minBlocks * maxSeqs));
  const wantedBlocks = options.kvCacheBytes !== undefined ? Math.floor(options.kvCacheBytes / (perToken * blockSize)) : defaultBlocks;
  const numBlocks = Math.min(limit, wantedBlocks);
  if (numBlocks < minBlocks) {
    throw new AutoGlmError(
      'gpu_out_of_memory',
      `a KV cache of ${numBlocks} blocks of ${blockSize} tokens cannot hold one sequence of the context length (${contextLength} tokens, ${minBlocks} blocks); ` +
        `raise kvCacheBytes or lower maxContextTokens`,
    );
  }
  return {
    runner: { numBlocks, blockSize, maxRows, maxSampleRows: maxSeqs, countSlots: maxSeqs, kvDType },
    kvBytes: numBlocks * blockSize * perToken,
    kvBytesPerToken: perToken,
  };
}
