/**
 * models/demo-stories with int8 weights (EngineOptions.weightDType 'int8') through the real
 * loader, runner and engine, against its f16 weights: quantization moves the logits a
 * little (measured: max 0.11 over the README stories, one top-1 token of 983 different),
 * so the bounds here are loose enough for kernel changes that reorder sums and tight
 * enough that a wrong scale, group or layout (which derails the stories at once) fails.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { loadModelFolder, type LoadedModelFolder } from '../../src/engine/model-folder.js';
import { ModelRunner } from '../../src/engine/runner/model-runner.js';
import { uploadModel } from '../../src/engine/runner/upload-model.js';
import type { WeightDTypeOption } from '../../src/engine/types.js';
import { isAutoGlmError } from '../../src/errors.js';
import { KernelRuntime } from '../../src/kernels/runtime.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { prefillAndDecodeLogits } from '../helpers/prefill-decode.js';
import { relativeError } from '../helpers/gpu.js';
import { CAT, CAT_PROMPT, DEMO, LILY, LILY_PROMPT } from '../helpers/demo-stories.js';

function commonPrefix(a: string, b: string): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

describe('int8 weights: logits against f16 (loader and runner)', () => {
  let rt: KernelRuntime;
  let folder: LoadedModelFolder;
  beforeAll(async () => {
    rt = await KernelRuntime.create();
    folder = await loadModelFolder(DEMO);
  });
  afterAll(async () => {
    await folder?.weights.close();
    rt?.destroy();
  });

  it('teacher-forced on the README stories: top-1 agrees at >= 98% of positions, logits within 0.5', async () => {
    const V = folder.spec.vocabSize;
    const logitsOf = async (weightDType: WeightDTypeOption, seqs: number[][]): Promise<{ logits: Float32Array[]; weightBytes: number }> => {
      const model = await uploadModel(rt, folder, { weightDType });
      const runner = new ModelRunner(rt, model, {
        numBlocks: 32,
        blockSize: 16,
        maxRows: 512,
        maxSampleRows: 512,
        countSlots: 1,
        kvDType: rt.preferredDType,
        foldNorms: true,
      });
      try {
        const blockTable = Array.from({ length: 32 }, (_, i) => i);
        const logits = [];
        for (const tokenIds of seqs) logits.push(await runner.logits([{ tokenIds, startPosition: 0, blockTable }]));
        return { logits, weightBytes: model.weightBytes };
      } finally {
        runner.destroy();
      }
    };
    const tok = folder.tokenizer;
    const stories = [
      [CAT_PROMPT, CAT],
      [LILY_PROMPT, LILY],
    ] as const;
    const prompts = stories.map(([p]) => tok.applyChatTemplate([{ role: 'user', content: p }], { addGenerationPrompt: true }));
    const seqs = stories.map(([, story], i) => [...prompts[i]!, ...tok.encode(story, { addSpecialTokens: false })]);
    const f16 = await logitsOf(rt.hasF16 ? 'f16' : 'f32', seqs);
    const int8 = await logitsOf('int8', seqs);

    const argmax = (a: Float32Array, at: number): number => {
      let best = 0;
      for (let i = 1; i < V; i++) if (a[at + i]! > a[at + best]!) best = i;
      return best;
    };
    let positions = 0;
    let agree = 0;
    let maxDiff = 0;
    for (let s = 0; s < seqs.length; s++) {
      // the positions that predict the story's tokens
      for (let pos = prompts[s]!.length - 1; pos < seqs[s]!.length - 1; pos++) {
        positions++;
        if (argmax(f16.logits[s]!, pos * V) === argmax(int8.logits[s]!, pos * V)) agree++;
        for (let i = pos * V; i < (pos + 1) * V; i++) {
          const d = Math.abs(f16.logits[s]![i]! - int8.logits[s]![i]!);
          // NaN fails: it is never <= the largest difference so far
          if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
        }
      }
    }
    expect(positions).toBeGreaterThan(600);
    expect(agree / positions).toBeGreaterThanOrEqual(0.98);
    expect(maxDiff).toBeLessThanOrEqual(0.5);
    // matmul weights a byte each (plus a 4-byte scale per 64) against f16's two
    expect(int8.weightBytes).toBeLessThan(0.6 * f16.weightBytes);
  });
});

describe('int8 weights: every matmul of the architectures quantized (loader and runner)', () => {
  let rt: KernelRuntime;
  let root: string;
  beforeAll(async () => {
    rt = await KernelRuntime.create();
    root = await mkdtemp(join(tmpdir(), 'autoglm-int8-'));
  });
  afterAll(async () => {
    rt?.destroy();
    await rm(root, { recursive: true, force: true });
  });

  // glm: q/k/v biases, fused gate_up, here with a tied LM head (quantized from the embedding);
  // qwen3: per-head q/k norms, separate gate and up, its own LM head; qwen3_moe: the router
  // and every expert (the prompt through the grouped expert kernels, the decode step per pair);
  // qwen2_moe and glm4_moe: their shared experts too (the sigmoid gate and choice bias stay f32)
  it.each([
    ['glm', true],
    ['qwen3', false],
    ['qwen3_moe', false],
    ['qwen2_moe', false],
    ['glm4_moe', false],
  ] as const)(
    '%s (tied head %s): logits near f32, and quantizing in chunks of rows changes nothing',
    async (architecture, tiedEmbeddings) => {
      const dir = join(root, architecture);
      await generateTestModel(dir, { architecture, dtype: 'bf16', seed: 7, tiedEmbeddings });
      const folder = await loadModelFolder(dir);
      try {
        const prompt = Array.from({ length: 40 }, (_, i) => 1 + ((i * 37) % (folder.spec.vocabSize - 1)));
        const bytes: Record<string, number> = {};
        const logits = async (options: Parameters<typeof uploadModel>[2]): Promise<Float32Array[]> => {
          const model = await uploadModel(rt, folder, options);
          bytes[options.weightDType] = model.weightBytes;
          // the prompt (GEMM), then one decode step (GEMV)
          return prefillAndDecodeLogits(rt, model, prompt, { next: 5, blockTable: [0, 1, 2, 3] });
        };
        const f32 = await logits({ weightDType: 'f32' });
        const int8 = await logits({ weightDType: 'int8' });
        // a few rows per read (gate and up, q, k and v each in several reads)
        const chunked = await logits({ weightDType: 'int8', quantizeChunkValues: 1000 });
        // every matmul weight, experts included, a byte each plus a 4-byte scale per 64 (f32: 4 bytes)
        expect(bytes['int8']!).toBeLessThan(0.35 * bytes['f32']!);
        // random weights: measured 0.7-1.4% over the architectures, tied or not, per position.
        // A token whose router sees two experts nearly tied may take the other one once the
        // weights are quantized, a different model for that token (glm4_moe's sigmoid router,
        // whose scores sit closer together than softmax probabilities: position 32 of 40 at
        // 42%, the rest 0.6-1.2%): one such position is allowed in the prompt, none elsewhere
        const V = folder.spec.vocabSize;
        const positionErrors = (a: Float32Array, b: Float32Array) =>
          Array.from({ length: a.length / V }, (_, p) => relativeError(a.subarray(p * V, (p + 1) * V), b.subarray(p * V, (p + 1) * V)));
        const rerouted = folder.spec.moe ? 1 : 0;
        expect(positionErrors(int8[0]!, f32[0]!).filter((e) => e > 0.03).length).toBeLessThanOrEqual(rerouted);
        expect(relativeError(int8[1]!, f32[1]!)).toBeLessThanOrEqual(0.03);
        for (let i = 0; i < 2; i++) expect(chunked[i]).toEqual(int8[i]);
      } finally {
        await folder.weights.close();
      }
    },
  );
});

describe('int8 weights: greedy generation (engine)', () => {
  const story = (prompt: string) => ({ prompt: [{ role: 'user' as const, content: prompt }], sampling: { temperature: 0 } });

  it('tells the README stories: the first 200 characters (byte tokens) of each as f16 does, then ends them', async () => {
    const engine = await Engine.load(DEMO, { weightDType: 'int8', responseCacheEntries: 0 });
    try {
      const [cat, lily] = await Promise.all([engine.complete(story(CAT_PROMPT)), engine.complete(story(LILY_PROMPT))]);
      // measured: the cat story entirely, Lily's for 262 characters (then a near tie goes the other way)
      expect(commonPrefix(cat.text, CAT)).toBeGreaterThanOrEqual(200);
      expect(commonPrefix(lily.text, LILY)).toBeGreaterThanOrEqual(200);
      expect([cat.finishReason, lily.finishReason]).toEqual(['stop', 'stop']);
    } finally {
      await engine.close();
    }
  });

  it('with forceF32 (f32 KV cache and embedding, int8 matmuls) as well', async () => {
    const engine = await Engine.load(DEMO, { weightDType: 'int8', forceF32: true, responseCacheEntries: 0 });
    try {
      const cat = await engine.complete({ ...story(CAT_PROMPT), maxTokens: 220 });
      expect(commonPrefix(cat.text, CAT)).toBeGreaterThanOrEqual(200);
    } finally {
      await engine.close();
    }
  });

  it('refuses a weight dtype it does not know, and f16 weights with forceF32, before loading', async () => {
    for (const options of [{ weightDType: 'int4' as WeightDTypeOption }, { weightDType: 'f16' as const, forceF32: true }]) {
      const e = await Engine.load('/nonexistent-model', options).catch((err: unknown) => err);
      expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
      expect((e as { param?: string }).param).toBe('weightDType');
    }
  });
});
