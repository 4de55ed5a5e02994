import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelSpec } from '../../src/engine/model/config.js';
import { loadGenerationConfig } from '../../src/engine/model/generation-config.js';
import { SUPPORTED_ARCHITECTURES, parameterCount } from '../../src/engine/model/model-spec.js';
import { openModelWeights } from '../../src/engine/model/sharded.js';
import { loadTokenizer } from '../../src/engine/tokenizer/index.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { TINY_QWEN3_MODEL } from '../helpers/qwen3.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'gen-test-'));
  dirs.push(d);
  return d;
}

describe('generateTestModel', () => {
  for (const architecture of SUPPORTED_ARCHITECTURES) {
    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      it(`${architecture} ${dtype}: a loadable Hugging Face folder`, async () => {
        const dir = tempDir();
        const gen = await generateTestModel(dir, { architecture, dtype, seed: 5 });
        const spec = await loadModelSpec(dir);
        expect(spec).toEqual(gen.spec);
        expect(spec.architecture).toBe(architecture);
        const w = await openModelWeights(dir, { spec });
        const header = { f32: 'F32', f16: 'F16', bf16: 'BF16' }[dtype];
        for (const name of w.tensorNames) expect(w.info(name).dtype).toBe(header);
        expect(w.tensorNames.length).toBe(Object.keys(w.tensorNames).length);
        await w.close();
        const tok = await loadTokenizer(dir);
        expect(tok.vocabSize).toBe(spec.vocabSize);
        const ids = tok.applyChatTemplate([{ role: 'user', content: 'hello there' }]);
        expect(ids[0]).toBe(spec.bosTokenId);
        expect(tok.decode(ids)).toBe('<s><|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n');
        const gc = await loadGenerationConfig(dir, spec);
        expect(gc.eosTokenIds).toEqual([tok.tokenId('</s>'), tok.tokenId('<|im_end|>')]);
      });
    }
  }

  it('is deterministic in the seed', async () => {
    const [a, b, c] = [tempDir(), tempDir(), tempDir()];
    await generateTestModel(a, { architecture: 'glm4', dtype: 'f16', seed: 11 });
    await generateTestModel(b, { architecture: 'glm4', dtype: 'f16', seed: 11 });
    await generateTestModel(c, { architecture: 'glm4', dtype: 'f16', seed: 12 });
    const file = (d: string, f: string): Buffer => readFileSync(join(d, f));
    for (const f of ['model.safetensors', 'tokenizer.json', 'config.json']) expect(file(a, f).equals(file(b, f))).toBe(true);
    expect(file(a, 'model.safetensors').equals(file(c, 'model.safetensors'))).toBe(false);
  });

  it('shape overrides, tied embeddings, sharding and options reach config.json', async () => {
    const dir = tempDir();
    const gen = await generateTestModel(dir, {
      architecture: 'llama',
      hidden: 96,
      layers: 3,
      heads: 6,
      kvHeads: 3,
      headDim: 16,
      intermediate: 200,
      vocab: 300,
      context: 128,
      tiedEmbeddings: true,
      sharded: true,
      shards: 2,
      ropeScaling: { rope_type: 'linear', factor: 2 },
    });
    expect(gen.spec).toMatchObject({
      hiddenSize: 96,
      numLayers: 3,
      numHeads: 6,
      numKvHeads: 3,
      headDim: 16,
      intermediateSize: 200,
      vocabSize: 300,
      contextLength: 128,
      tiedEmbeddings: true,
    });
    expect(gen.spec.rope.scaling).toEqual({ type: 'linear', factor: 2 });
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);
    const w = await openModelWeights(dir, { spec: gen.spec });
    expect(w.files.map((f) => f.slice(dir.length + 1))).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(w.has('lm_head.weight')).toBe(false);
    await w.close();
    const mistral = await generateTestModel(tempDir(), { architecture: 'mistral', slidingWindow: 8, weights: false });
    expect(mistral.spec.slidingWindow).toBe(8);
  });

  it('the byte-level BPE merges text and round-trips any text', async () => {
    const dir = tempDir();
    await generateTestModel(dir, { architecture: 'qwen2', vocab: 2048, weights: false });
    const tok = await loadTokenizer(dir);
    const text = 'the quick brown fox jumps over the lazy dog, then sleeps. 猫 😀';
    const ids = tok.encode(text);
    expect(ids.length).toBeLessThan(Buffer.byteLength(text));
    expect(tok.decode(ids)).toBe(text);
    for (let id = 0; id < 2048; id++) expect(tok.tokenString(id)).toBeDefined();
  });

  it('real Qwen3 and Llama 3 tokenizers with matching vocabulary sizes and ids', async () => {
    const q = await generateTestModel(tempDir(), TINY_QWEN3_MODEL);
    expect(q.spec.vocabSize).toBe(151936);
    const qt = await loadTokenizer(q.dir);
    expect(qt.encode('Hello world!')).toEqual([9707, 1879, 0]);
    expect(q.spec.eosTokenIds).toEqual(qt.eosTokenIds);
    const l = await generateTestModel(tempDir(), { architecture: 'llama', tokenizer: 'llama3', weights: false });
    expect(l.spec.vocabSize).toBe(128256);
    const lt = await loadTokenizer(l.dir);
    expect(l.spec.bosTokenId).toBe(lt.bosTokenId);
    expect(l.spec.eosTokenIds).toContain(lt.eosTokenIds[0]);
  });

  it('sizing presets write config only, with the real models parameter counts', async () => {
    const one = await generateTestModel(tempDir(), { preset: '1b', weights: false });
    expect(parameterCount(one.spec)).toBe(1_235_814_400); // Llama 3.2 1B
    const seven = await generateTestModel(tempDir(), { preset: '7b', weights: false });
    expect(parameterCount(seven.spec)).toBe(6_738_415_616); // Llama 2 7B
    await expect(generateTestModel(tempDir(), { preset: '7b' })).rejects.toThrow(/sizing only/);
    const hundred = await generateTestModel(tempDir(), { preset: '100m', weights: false });
    expect(hundred.parameterCount).toBeGreaterThan(95e6);
    expect(hundred.parameterCount).toBeLessThan(110e6);
  });
});
