/**
 * The KV budget's default on the real device: a documented fraction of what WebGPU says the
 * device allows (maxBufferSize) after the bytes the uploaded weights take, bounded by one
 * binding per layer and by every batch slot at full context. The expected numbers are
 * derived from the adapter's limits and the model's shape, so the test holds on any adapter.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import {
  DEFAULT_KV_MEMORY_FRACTION,
  allocateKvShrinking,
  checkKvCacheBytes,
  defaultKvBudgetBytes,
  kvBytesPerToken,
  planMemory,
} from '../../src/engine/memory-plan.js';
import { AutoGlmError, isAutoGlmError } from '../../src/errors.js';
import { loadModelFolder, type LoadedModelFolder } from '../../src/engine/model-folder.js';
import type { ModelSpec } from '../../src/engine/model/model-spec.js';
import { uploadModel } from '../../src/engine/runner/upload-model.js';
import type { GpuModel } from '../../src/engine/runner/gpu-model.js';
import { maxKvBlocks } from '../../src/kernels/kv-write.js';
import { KernelRuntime } from '../../src/kernels/runtime.js';

// the upload, counted (and run as it is): a refusal "before the upload" must not reach it
vi.mock('../../src/engine/runner/upload-model.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/engine/runner/upload-model.js')>();
  return { ...real, uploadModel: vi.fn(real.uploadModel) };
});

const DEMO = 'models/demo-stories';
const BLOCK = 16;
const SLOTS = 64; // the engine's default maxBatchSequences

let rt: KernelRuntime;
let folder: LoadedModelFolder;
let model: GpuModel;
let deviceBytes: number;
let dtypeBytes: number;

beforeAll(async () => {
  rt = await KernelRuntime.create();
  folder = await loadModelFolder(DEMO);
  model = await uploadModel(rt, folder, { weightDType: rt.preferredDType });
  await folder.weights.close();
  deviceBytes = rt.ctx.limits.maxBufferSize;
  dtypeBytes = rt.preferredDType === 'f16' ? 2 : 4;
});

afterAll(() => rt?.destroy());

/** The demo spec with another attention shape and context (planMemory reads only those and the vocabulary). */
function specWith(shape: Pick<ModelSpec, 'numLayers' | 'numKvHeads' | 'headDim' | 'contextLength'>): ModelSpec {
  return { ...folder.spec, ...shape };
}

function bounds(spec: ModelSpec): { blockBytes: number; minBlocks: number; bindingBlocks: number; slotBlocks: number } {
  const blockBytes = kvBytesPerToken(spec, dtypeBytes) * BLOCK;
  const minBlocks = Math.ceil(spec.contextLength / BLOCK);
  const bindingBlocks = maxKvBlocks(rt, { blockSize: BLOCK, nKvHeads: spec.numKvHeads, headDim: spec.headDim, dtype: rt.preferredDType });
  return { blockBytes, minBlocks, bindingBlocks, slotBlocks: minBlocks * SLOTS };
}

describe('the default KV budget', () => {
  it('residentBytes is every weight byte on the device, the embedding table included', () => {
    const s = folder.spec;
    const embeddingBytes = s.vocabSize * s.hiddenSize * dtypeBytes;
    const ropeBytes = (s.rope.rotaryDim / 2) * 4;
    expect(model.residentBytes).toBe(model.weightBytes + embeddingBytes + ropeBytes);
  });

  it('is the documented fraction of the device memory after the weights', () => {
    expect(DEFAULT_KV_MEMORY_FRACTION).toBeGreaterThan(0);
    expect(DEFAULT_KV_MEMORY_FRACTION).toBeLessThan(1);
    expect(defaultKvBudgetBytes({ maxBufferBytes: deviceBytes }, model.residentBytes)).toBe(
      Math.floor(DEFAULT_KV_MEMORY_FRACTION * (deviceBytes - model.residentBytes)),
    );
    // weights that fill the device leave nothing, never a negative budget
    expect(defaultKvBudgetBytes({ maxBufferBytes: deviceBytes }, deviceBytes + 1)).toBe(0);
  });

  it('between its bounds, the weights decide: more weight bytes, fewer blocks, by the fraction', () => {
    const spec = specWith({ numLayers: 8, numKvHeads: 8, headDim: 64, contextLength: 2048 });
    const { blockBytes, minBlocks, bindingBlocks, slotBlocks } = bounds(spec);
    // weights sized (from the limits) so that the budget lands halfway between the bounds
    const target = Math.floor((minBlocks + Math.min(bindingBlocks, slotBlocks)) / 2);
    const heavy = deviceBytes - Math.ceil((target * blockBytes) / DEFAULT_KV_MEMORY_FRACTION);
    const lighter = heavy - 64 * blockBytes;
    const planHeavy = planMemory(rt, spec, { residentBytes: heavy }, {});
    const planLighter = planMemory(rt, spec, { residentBytes: lighter }, {});
    expect(planHeavy.runner.numBlocks).toBeGreaterThan(minBlocks);
    expect(planHeavy.runner.numBlocks).toBeLessThan(Math.min(bindingBlocks, slotBlocks));
    expect(Math.abs(planHeavy.runner.numBlocks - target)).toBeLessThanOrEqual(1);
    expect(planHeavy.kvBytes).toBeLessThanOrEqual(DEFAULT_KV_MEMORY_FRACTION * (deviceBytes - heavy));
    expect(planHeavy.kvBytes).toBeGreaterThan(DEFAULT_KV_MEMORY_FRACTION * (deviceBytes - heavy) - blockBytes);
    // 64 blocks' worth less weight gives the KV cache the fraction of it: 32 more blocks at 0.5
    expect(planLighter.runner.numBlocks - planHeavy.runner.numBlocks).toBe(Math.round(64 * DEFAULT_KV_MEMORY_FRACTION));
  });

  it('a small model gets every batch slot at full context, no more', async () => {
    const spec = folder.spec;
    const { minBlocks, bindingBlocks } = bounds(spec);
    const budgetBlocks = defaultKvBudgetBytes({ maxBufferBytes: deviceBytes }, model.residentBytes) / bounds(spec).blockBytes;
    expect(budgetBlocks).toBeGreaterThan(minBlocks * SLOTS); // the demo model is tiny: the slots bind
    expect(planMemory(rt, spec, model, {}).runner.numBlocks).toBe(Math.min(bindingBlocks, minBlocks * SLOTS));
    expect(planMemory(rt, spec, model, { maxBatchSequences: 4 }).runner.numBlocks).toBe(minBlocks * 4);
    expect(planMemory(rt, spec, model, { maxContextTokens: 100 }).runner.numBlocks).toBe(Math.ceil(100 / BLOCK) * SLOTS);
  });

  it('never more blocks than one binding per layer holds', () => {
    const spec = specWith({ numLayers: 2, numKvHeads: 32, headDim: 128, contextLength: 8192 });
    const { blockBytes, minBlocks, bindingBlocks, slotBlocks } = bounds(spec);
    const budgetBlocks = Math.floor(defaultKvBudgetBytes({ maxBufferBytes: deviceBytes }, model.residentBytes) / blockBytes);
    expect(bindingBlocks).toBeGreaterThanOrEqual(minBlocks);
    expect(bindingBlocks).toBeLessThan(Math.min(budgetBlocks, slotBlocks)); // the binding is what binds here
    expect(planMemory(rt, spec, model, {}).runner.numBlocks).toBe(bindingBlocks);
  });

  it('never fewer blocks than one sequence at full context, however heavy the weights', () => {
    const spec = specWith({ numLayers: 8, numKvHeads: 8, headDim: 64, contextLength: 2048 });
    const { minBlocks } = bounds(spec);
    expect(planMemory(rt, spec, { residentBytes: deviceBytes }, {}).runner.numBlocks).toBe(minBlocks);
  });

  it('an explicit kvCacheBytes replaces the default', () => {
    const spec = folder.spec;
    const { blockBytes } = bounds(spec);
    const plan = planMemory(rt, spec, model, { kvCacheBytes: 100 * blockBytes + 1 });
    expect(plan.runner.numBlocks).toBe(100);
    expect(plan.kvBytes).toBe(100 * blockBytes);
    // too small for one sequence at full context: the error names the option to raise
    let caught: unknown;
    try {
      planMemory(rt, spec, model, { kvCacheBytes: 1 });
    } catch (e) {
      caught = e;
    }
    expect(isAutoGlmError(caught, 'invalid_request')).toBe(true);
    expect((caught as { param?: string }).param).toBe('kvCacheBytes');
  });

  it('an explicit kvCacheBytes must hold one full-context sequence in whole blocks, no less', () => {
    const spec = folder.spec;
    const { blockBytes, minBlocks } = bounds(spec);
    const refused = (kvCacheBytes: number, maxContextTokens?: number): string | null => {
      try {
        checkKvCacheBytes(spec, { kvCacheBytes, ...(maxContextTokens ? { maxContextTokens } : {}) }, rt.preferredDType);
        return null;
      } catch (e) {
        expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
        return (e as Error).message;
      }
    };
    expect(refused(minBlocks * blockBytes)).toBeNull();
    expect(refused(minBlocks * blockBytes - 1)).toBe(
      `kvCacheBytes ${minBlocks * blockBytes - 1} cannot hold one sequence of the context length: ${spec.contextLength} tokens x ` +
        `${blockBytes / BLOCK} bytes per token (${rt.preferredDType} KV cache, blocks of ${BLOCK} tokens) needs ${minBlocks * blockBytes}; ` +
        'raise kvCacheBytes to at least that or lower maxContextTokens',
    );
    // a shorter context needs less (100 tokens: 7 blocks)
    expect(refused(7 * blockBytes, 100)).toBeNull();
  });

  it('Engine.load refuses a kvCacheBytes too small for one sequence before the upload, naming it', async () => {
    const uploads = vi.mocked(uploadModel).mock.calls.length;
    const e = await Engine.load(DEMO, { kvCacheBytes: 1024 }).catch((x: unknown) => x);
    expect(isAutoGlmError(e, 'invalid_request'), String(e)).toBe(true);
    expect((e as { param?: string }).param).toBe('kvCacheBytes');
    // was gpu_out_of_memory from planMemory, after the weights were on the GPU
    expect(vi.mocked(uploadModel).mock.calls.length).toBe(uploads);
  });
});

describe('when the device refuses the default budget', () => {
  // Blocks sized so that the plan asks for 4x the largest buffer the device accepts: the
  // runtime refuses it with its real gpu_out_of_memory, as a GPU whose maxBufferSize
  // overstates its memory refuses a KV cache at allocation.
  const allocateOne = (blockBytes: number, tried: number[]) => async (numBlocks: number) => {
    tried.push(numBlocks);
    const buffer = rt.createBuffer(numBlocks * blockBytes, undefined, 'kv-probe');
    await rt.sync();
    rt.destroyBuffer(buffer);
    return numBlocks;
  };

  it('halves the blocks until the device accepts them', async () => {
    const blockBytes = Math.ceil(deviceBytes / 100);
    const tried: number[] = [];
    const got = await allocateKvShrinking(
      { runner: { numBlocks: 400 }, minBlocks: 10, kvBudgetEstimated: true },
      allocateOne(blockBytes, tried),
    );
    expect(tried).toEqual([400, 200, 100, 50]);
    expect(got).toEqual({ value: 50, numBlocks: 50 });
  });

  it('an explicit budget is not second-guessed, and never fewer blocks than one full-context sequence', async () => {
    const blockBytes = Math.ceil(deviceBytes / 100);
    const explicit: number[] = [];
    const e1 = await allocateKvShrinking(
      { runner: { numBlocks: 400 }, minBlocks: 10, kvBudgetEstimated: false },
      allocateOne(blockBytes, explicit),
    ).catch((e: unknown) => e);
    expect(isAutoGlmError(e1, 'gpu_out_of_memory')).toBe(true);
    expect(explicit).toEqual([400]);
    const floor: number[] = [];
    const e2 = await allocateKvShrinking(
      { runner: { numBlocks: 800 }, minBlocks: 300, kvBudgetEstimated: true },
      allocateOne(blockBytes, floor),
    ).catch((e: unknown) => e);
    expect(isAutoGlmError(e2, 'gpu_out_of_memory')).toBe(true);
    expect(floor).toEqual([800, 400, 300]);
  });

  it('other errors are not out-of-memory: no retry', async () => {
    let calls = 0;
    const e = await allocateKvShrinking({ runner: { numBlocks: 400 }, minBlocks: 10, kvBudgetEstimated: true }, async () => {
      calls++;
      throw new AutoGlmError('gpu_validation_error', 'not a memory problem');
    }).catch((err: unknown) => err);
    expect(isAutoGlmError(e, 'gpu_validation_error')).toBe(true);
    expect(calls).toBe(1);
  });
});
