/**
 * Block-quantized FP8 checkpoints (F8_E4M3 projections with weight_scale_inv blocks,
 * quantization_config quant_method fp8) through the real loader, uploader, runner and
 * engine. Three checks per architecture:
 * - logits and greedy output equal the float64 reference, which reads the dequantized
 *   weights through the same reader (so this is the engine reading them right);
 * - the engine gives exactly what it gives for a twin checkpoint written in f32 from the
 *   values the reader returns: the FP8 decode and block scales are applied where the
 *   uploader reads (whole tensors, per expert, in row ranges for int8), nothing else differs;
 * - the dequantized model stays near the unquantized one it was made from (the scales are
 *   the right ones, not merely consistent).
 * Blocks of [24, 20] fit none of the tiny models' sizes evenly, so partial blocks are read.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { loadModelFolder } from '../../src/engine/model-folder.js';
import { loadModelSpec } from '../../src/engine/model/config.js';
import { listWeights } from '../../src/engine/model/model-spec.js';
import { SafetensorsFile } from '../../src/engine/model/safetensors.js';
import { openModelWeights } from '../../src/engine/model/sharded.js';
import { uploadModel, type UploadOptions } from '../../src/engine/runner/upload-model.js';
import type { EngineOptions } from '../../src/engine/types.js';
import { KernelRuntime } from '../../src/kernels/runtime.js';
import { generateTestModel, type GenerateTestModelOptions } from '../../src/testing/generate-model.js';
import { prefillAndDecodeLogits } from '../helpers/prefill-decode.js';
import { writeSafetensors } from '../../src/testing/safetensors-writer.js';
import { relativeError } from '../helpers/gpu.js';
import { loadReferenceModel } from '../reference/forward.js';

const BLOCK: [number, number] = [24, 20];
const PROMPT_TOKENS = 48;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-fp8-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/**
 * `dir`'s model as a plain f32 checkpoint of the values its reader returns (every tensor
 * the spec names, dequantized where FP8), with the tokenizer and generation files.
 */
async function writeDequantizedTwin(dir: string, twin: string): Promise<void> {
  await mkdir(twin, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) await copyFile(join(dir, f), join(twin, f));
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  delete config['quantization_config'];
  await writeFile(join(twin, 'config.json'), JSON.stringify({ ...config, torch_dtype: 'float32' }));
  const spec = await loadModelSpec(dir);
  const weights = await openModelWeights(dir, { spec });
  try {
    const tensors = listWeights(spec.weights);
    const values = new Map<string, Float32Array>();
    for (const t of tensors) values.set(t.name, await weights.read(t.name, 'f32'));
    await writeSafetensors(join(twin, 'model.safetensors'), tensors, 'f32', (t) => values.get(t.name)!);
  } finally {
    await weights.close();
  }
}

/** Logits of every prompt position, then of one decode step. */
async function gpuLogits(dir: string, runtime: { forceF32: boolean }, upload: UploadOptions, prompt: number[]): Promise<Float32Array[]> {
  const rt = await KernelRuntime.create(runtime);
  const folder = await loadModelFolder(dir);
  try {
    const model = await uploadModel(rt, folder, upload);
    return await prefillAndDecodeLogits(rt, model, prompt, { next: 7, blockTable: [2, 0, 3, 1] });
  } finally {
    await folder.weights.close();
    rt.destroy();
  }
}

async function greedy(dir: string, options: EngineOptions, prompt: number[]): Promise<number[]> {
  const engine = await Engine.load(dir, { ...options, responseCacheEntries: 0 });
  try {
    const got = await engine.complete({ prompt, maxTokens: 32, ignoreEos: true, sampling: { temperature: 0 } });
    expect(got.finishReason).toBe('length');
    return got.tokenIds;
  } finally {
    await engine.close();
  }
}

// glm: fused gate_up_proj, q/k/v biases, a tied LM head; qwen3_moe: every expert, and a
// dense layer with Llama's separate q/k/v, o, gate, up and down; glm4_moe: GLM-4.5-FP8's
// shape, its shared experts quantized too, router and choice bias left in bf16
const CASES: [string, GenerateTestModelOptions][] = [
  ['glm', { architecture: 'glm', tiedEmbeddings: true }],
  ['qwen3_moe', { architecture: 'qwen3_moe', mlpOnlyLayers: [1] }],
  ['glm4_moe', { architecture: 'glm4_moe' }],
];

describe.each(CASES)('%s FP8 checkpoint', (name, options) => {
  let dir: string;
  let twin: string;
  let plain: string;
  let prompt: number[];
  beforeAll(async () => {
    dir = join(root, name);
    twin = join(root, `${name}-twin`);
    plain = join(root, `${name}-bf16`);
    const generated = await generateTestModel(dir, { ...options, seed: 7, fp8: { blockSize: BLOCK } });
    // the same weights before quantization
    await generateTestModel(plain, { ...options, seed: 7, dtype: 'bf16' });
    await writeDequantizedTwin(dir, twin);
    const V = generated.spec.vocabSize;
    prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => 1 + ((i * 37 + name.length) % (V - 1)));
  }, 60_000);

  it('is written as FP8 exports are: projections F8_E4M3 with F32 block scales, the rest BF16', async () => {
    const spec = await loadModelSpec(dir);
    expect(spec.quantization).toEqual({ method: 'fp8', blockSize: BLOCK });
    const file = await SafetensorsFile.open(join(dir, 'model.safetensors'));
    try {
      const dtypes = new Map([...file.tensors.values()].map((t) => [t.name, t.dtype]));
      const fp8 = spec.weights.layers.flatMap((l) => [
        l.qProj,
        l.kProj,
        l.vProj,
        l.oProj,
        l.gateProj,
        l.upProj,
        l.gateUpProj,
        l.downProj,
        ...(l.expertGate ?? []),
        ...(l.expertUp ?? []),
        ...(l.expertDown ?? []),
        l.sharedGateProj,
        l.sharedUpProj,
        l.sharedDownProj,
      ]);
      const quantized = fp8.filter((t) => t !== undefined);
      for (const t of quantized) {
        expect(dtypes.get(t.name), t.name).toBe('F8_E4M3');
        expect(dtypes.get(`${t.name}_scale_inv`), t.name).toBe('F32');
      }
      // every tensor the layout names is one of them or BF16, and the checkpoint holds nothing else but scales
      const others = listWeights(spec.weights).filter((t) => !quantized.includes(t));
      for (const t of others) expect(dtypes.get(t.name), t.name).toBe('BF16');
      expect(others.some((t) => t.name.endsWith('mlp.gate.weight'))).toBe(spec.moe !== null);
      const extra = [...dtypes.keys()].filter((n) => !listWeights(spec.weights).some((t) => t.name === n) && !n.endsWith('_scale_inv'));
      expect(extra.every((n) => n.startsWith(`model.layers.${spec.numLayers}.`))).toBe(true); // GLM-4.5's MTP layer
    } finally {
      await file.close();
    }
  });

  it('f32 path: logits equal the float64 reference; exactly the f32 twin; near the unquantized model', async () => {
    const reference = await loadReferenceModel(dir);
    const cache = reference.newCache();
    const want = [reference.forward(prompt, cache), reference.forward([7], cache)].map((rows) => {
      const out = new Float64Array(rows.reduce((n, r) => n + r.length, 0));
      rows.forEach((r, i) => out.set(r, i * r.length));
      return out;
    });
    const f32 = { weightDType: 'f32' } as const;
    const got = await gpuLogits(dir, { forceF32: true }, f32, prompt);
    for (let i = 0; i < 2; i++) expect(relativeError(got[i]!, want[i]!)).toBeLessThanOrEqual(1e-4);
    expect(await gpuLogits(twin, { forceF32: true }, f32, prompt)).toEqual(got);
    // e4m3's 3 mantissa bits move the logits (measured 3.8-4.0% for llama and qwen3_moe, 9.3-9.8%
    // for the GLMs); scales left out or read from the wrong tensor would give another model
    const unquantized = (await loadReferenceModel(plain)).forward(prompt).flatMap((r) => Array.from(r));
    const moved = relativeError(got[0]!, unquantized);
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThanOrEqual(0.2);
  });

  it('greedy 32 tokens: the reference on the f32 path, the f32 twin on the default (f16) path', async () => {
    const start = prompt.slice(0, 16);
    expect(await greedy(dir, { forceF32: true }, start)).toEqual((await loadReferenceModel(dir)).greedy(start, { maxTokens: 32 }).tokens);
    expect(await greedy(dir, {}, start)).toEqual(await greedy(twin, {}, start));
  });

  it('--weight-dtype int8 quantizes from the dequantized values: the twin exactly, whole and in row chunks', async () => {
    const runtime = { forceF32: false };
    const int8 = await gpuLogits(dir, runtime, { weightDType: 'int8' }, prompt);
    // a few rows per read: ranges that start and end inside blocks of 24 rows
    const chunked = await gpuLogits(dir, runtime, { weightDType: 'int8', quantizeChunkValues: 700 }, prompt);
    expect(chunked).toEqual(int8);
    expect(await gpuLogits(twin, runtime, { weightDType: 'int8' }, prompt)).toEqual(int8);
    const start = prompt.slice(0, 16);
    const tokens = await greedy(dir, { weightDType: 'int8' }, start);
    expect(tokens).toHaveLength(32);
    expect(tokens).toEqual(await greedy(twin, { weightDType: 'int8' }, start));
  });
});
