/**
 * Sizes the engine's GPU memory after the weights are up: KV blocks from a byte budget,
 * batch limits from the binding limits (logits and token counts must each fit one binding).
 */
import { AutoGlmError, isAutoGlmError } from '../errors.js';
import { maxKvBlocks } from '../kernels/kv-write.js';
import type { KernelRuntime } from '../kernels/runtime.js';
import { TokenCounts } from '../kernels/token-counts.js';
import type { ModelSpec } from './model/model-spec.js';
import type { RunnerOptions } from './runner/model-runner.js';
import type { GpuModel } from './runner/gpu-model.js';
import { promptLookupOf } from './engine-options.js';
import type { SpeculationOptions } from './scheduler.js';
import type { EngineOptions } from './types.js';

/**
 * Share of the device memory left after the weights that the KV cache takes when no
 * kvCacheBytes is given. WebGPU has no free-memory query; the one device-wide size it
 * reports is maxBufferSize, the largest allocation the device accepts (4 GiB on lavapipe,
 * Vulkan's maxBufferSize or maxMemoryAllocationSize elsewhere, which can exceed the real
 * memory). Half of what is left after the weights keeps room for the step buffers,
 * other processes on the GPU and that figure being optimistic; the bounds in
 * planMemory (one binding per layer, every batch slot at full context) usually bind first,
 * and where the device still refuses it, allocateKvShrinking halves it.
 */
export const DEFAULT_KV_MEMORY_FRACTION = 0.5;

export interface MemoryPlan {
  runner: RunnerOptions;
  /** Sequences decoded together (the runner's sampled rows are these plus the draft rows). */
  maxBatchSequences: number;
  /** Speculative decoding, where asked for and the logits binding has room for draft rows. */
  speculation: SpeculationOptions | undefined;
  kvBytes: number;
  kvBytesPerToken: number;
  /** Fewest KV blocks the engine can run with: one sequence at full context. */
  minBlocks: number;
  /**
   * True when the budget is the default, an estimate from limits rather than a measurement:
   * if the device refuses it, fewer blocks may be tried (allocateKvShrinking).
   */
  kvBudgetEstimated: boolean;
}

export function kvBytesPerToken(spec: Pick<ModelSpec, 'numLayers' | 'numKvHeads' | 'headDim'>, dtypeBytes: number): number {
  return 2 * spec.numLayers * spec.numKvHeads * spec.headDim * dtypeBytes;
}

/** KV blocks when EngineOptions.kvBlockSize is not given. */
const DEFAULT_KV_BLOCK_SIZE = 16;

/**
 * Logits the rows scored for prompt logprobs may take by default (EngineOptions.promptLogprobsRows):
 * a longer prompt is scored over several steps. Fewer rows a step cost steps, not work.
 */
const PROMPT_SCORE_LOGITS_BYTES = 32 * 2 ** 20;
const MAX_DEFAULT_PROMPT_SCORE_ROWS = 512;

/** Logits of the draft rows of one step (speculative decoding), beyond one per drafting sequence. */
const DRAFT_LOGITS_BYTES = 32 * 2 ** 20;

/** How checkKvCacheBytes names the budget and the context cap: the library's options, or the CLI's flags. */
export interface KvBudgetNames {
  budget: string;
  param: string;
  maxContext: string;
}

const OPTION_NAMES: KvBudgetNames = { budget: 'kvCacheBytes', param: 'kvCacheBytes', maxContext: 'maxContextTokens' };

/**
 * An explicit kvCacheBytes must hold one sequence at full context (whole blocks), or long
 * requests could never run. config.json's shapes and the KV dtype decide it, so it is
 * checked before the weights are uploaded (planMemory found it only after, minutes later
 * on a large model): invalid_request naming the budget, with the least that would do.
 */
export function checkKvCacheBytes(
  spec: Pick<ModelSpec, 'numLayers' | 'numKvHeads' | 'headDim' | 'contextLength'>,
  options: Pick<EngineOptions, 'kvCacheBytes' | 'kvBlockSize' | 'maxContextTokens'>,
  kvDType: 'f16' | 'f32',
  names: KvBudgetNames = OPTION_NAMES,
): void {
  const budgetBytes = options.kvCacheBytes;
  if (budgetBytes === undefined) return;
  const blockSize = options.kvBlockSize ?? DEFAULT_KV_BLOCK_SIZE;
  const contextLength = Math.min(spec.contextLength, options.maxContextTokens ?? Infinity);
  const perToken = kvBytesPerToken(spec, kvDType === 'f16' ? 2 : 4);
  const neededBytes = Math.ceil(contextLength / blockSize) * blockSize * perToken;
  if (budgetBytes >= neededBytes) return;
  throw new AutoGlmError(
    'invalid_request',
    `${names.budget} ${budgetBytes} cannot hold one sequence of the context length: ${contextLength} tokens x ${perToken} bytes per token ` +
      `(${kvDType} KV cache, blocks of ${blockSize} tokens) needs ${neededBytes}; raise ${names.budget} to at least that or lower ${names.maxContext}`,
    { param: names.param },
  );
}

/** The default KV budget: DEFAULT_KV_MEMORY_FRACTION of the device's memory (as WebGPU reports it) after the weights. */
export function defaultKvBudgetBytes(device: { maxBufferBytes: number }, residentWeightBytes: number): number {
  return Math.max(0, Math.floor(DEFAULT_KV_MEMORY_FRACTION * (device.maxBufferBytes - residentWeightBytes)));
}

export function planMemory(rt: KernelRuntime, spec: ModelSpec, model: Pick<GpuModel, 'residentBytes'>, options: EngineOptions): MemoryPlan {
  const blockSize = options.kvBlockSize ?? DEFAULT_KV_BLOCK_SIZE;
  if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > 1024) {
    throw new AutoGlmError('invalid_request', `kvBlockSize must be an integer in [1, 1024], got ${blockSize}`, { param: 'kvBlockSize' });
  }
  const kvDType = rt.preferredDType;
  checkKvCacheBytes(spec, options, kvDType);
  const dtypeBytes = kvDType === 'f16' ? 2 : 4;
  const perToken = kvBytesPerToken(spec, dtypeBytes);
  const blockBytes = perToken * blockSize;

  // logits [rows, vocab] f32 and token counts [slots, vocab] u32 are single bindings
  const byVocab = Math.floor(rt.maxBindingBytes / (4 * spec.vocabSize));
  const maxSeqs = Math.max(1, Math.min(options.maxBatchSequences ?? 64, byVocab, TokenCounts.maxSlots(rt, spec.vocabSize)));
  const maxRows = Math.max(maxSeqs, options.maxBatchTokens ?? 512);
  // rows of logits for prompt logprobs, beside the sampled ones, where the binding has room
  const wantedScoreRows =
    options.promptLogprobsRows ?? Math.min(MAX_DEFAULT_PROMPT_SCORE_ROWS, Math.floor(PROMPT_SCORE_LOGITS_BYTES / (4 * spec.vocabSize)));
  const maxScoreRows = Math.max(0, Math.min(wantedScoreRows, byVocab - maxSeqs));
  const speculation = planSpeculation(options, maxSeqs, byVocab - maxSeqs - maxScoreRows, spec.vocabSize);
  const maxDraftRows = speculation?.maxDraftRows ?? 0;
  const contextLength = Math.min(spec.contextLength, options.maxContextTokens ?? Infinity);

  // one sequence at full context must fit, or long requests could never run
  const minBlocks = Math.ceil(contextLength / blockSize);
  // each layer's K (and V) is one binding
  const limit = maxKvBlocks(rt, { blockSize, nKvHeads: spec.numKvHeads, headDim: spec.headDim, dtype: kvDType });
  const estimated = options.kvCacheBytes === undefined;
  const budgetBytes = options.kvCacheBytes ?? defaultKvBudgetBytes({ maxBufferBytes: rt.ctx.limits.maxBufferSize }, model.residentBytes);
  const budgetBlocks = Math.floor(budgetBytes / blockBytes);
  // the default never goes below one full-context sequence (the error below is for explicit
  // budgets) nor above every batch slot at full context, which could never be used
  const wantedBlocks = estimated ? Math.max(minBlocks, Math.min(budgetBlocks, minBlocks * maxSeqs)) : budgetBlocks;
  const numBlocks = Math.min(limit, wantedBlocks);
  // an explicit budget holds one sequence (checkKvCacheBytes): what is left is the device's binding limit
  if (numBlocks < minBlocks) {
    throw new AutoGlmError(
      'gpu_out_of_memory',
      `a KV cache of ${numBlocks} blocks of ${blockSize} tokens (the most one binding per layer holds) cannot hold one sequence of the context length ` +
        `(${contextLength} tokens, ${minBlocks} blocks); lower maxContextTokens`,
    );
  }
  return {
    runner: {
      numBlocks,
      blockSize,
      maxRows,
      maxSampleRows: maxSeqs + maxDraftRows,
      maxScoreRows,
      countSlots: maxSeqs,
      kvDType,
      foldNorms: options.foldNorms ?? true,
    },
    maxBatchSequences: maxSeqs,
    speculation,
    kvBytes: numBlocks * blockBytes,
    kvBytesPerToken: perToken,
    minBlocks,
    kvBudgetEstimated: estimated,
  };
}

/**
 * Draft rows per step: every sequence's drafts where DRAFT_LOGITS_BYTES of logits hold them
 * (at least one sequence's), and never more than the logits binding has left.
 */
function planSpeculation(options: EngineOptions, maxSeqs: number, rowsLeft: number, vocab: number): SpeculationOptions | undefined {
  const numDraftTokens = options.speculativeTokens ?? 0;
  const byBytes = Math.max(numDraftTokens, Math.floor(DRAFT_LOGITS_BYTES / (4 * vocab)));
  const maxDraftRows = Math.min(numDraftTokens * maxSeqs, byBytes, rowsLeft);
  if (numDraftTokens === 0 || maxDraftRows < 1) return undefined;
  const lookup = promptLookupOf(options);
  return { numDraftTokens, maxDraftRows, minNgram: lookup.min, maxNgram: lookup.max };
}

/**
 * Allocates with the plan's KV blocks. When the budget is the default (WebGPU's
 * maxBufferSize can exceed the real memory: Vulkan reports maintenance4's maxBufferSize,
 * which says nothing of the VRAM) and the device runs out of memory, halves the blocks and
 * tries again, down to one sequence at full context. `allocate` must free what it made
 * before it throws. An explicit budget, or any other error, fails as it is.
 */
export async function allocateKvShrinking<T>(
  plan: Pick<MemoryPlan, 'minBlocks' | 'kvBudgetEstimated'> & { runner: Pick<RunnerOptions, 'numBlocks'> },
  allocate: (numBlocks: number) => Promise<T>,
): Promise<{ value: T; numBlocks: number }> {
  let numBlocks = plan.runner.numBlocks;
  for (;;) {
    try {
      return { value: await allocate(numBlocks), numBlocks };
    } catch (e) {
      const canShrink = plan.kvBudgetEstimated && numBlocks > plan.minBlocks && isAutoGlmError(e, 'gpu_out_of_memory');
      if (!canShrink) throw e;
      numBlocks = Math.max(plan.minBlocks, Math.floor(numBlocks / 2));
    }
  }
}
