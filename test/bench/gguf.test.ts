import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportGguf, permuteRopeRows } from '../../src/bench/gguf-export.js';
import { GgmlType, GgufValueType, gguf, readGguf, readGgufTensor, writeGguf, type GgufValue } from '../../src/bench/gguf.js';
import { openModelWeights, loadModelSpec } from '../../src/engine/model/index.js';
import { generateTestModel } from '../../src/testing/generate-model.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gguf-test-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const bytesOf = (a: Float32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe('GGUF writer', () => {
  it('round trip: every metadata type, tensor infos with reversed dims, aligned offsets, data intact', async () => {
    const path = join(dir, 'rt.gguf');
    const a = Float32Array.from({ length: 3 * 5 }, (_, i) => i * 0.5 - 3);
    const b = Uint16Array.from({ length: 7 }, (_, i) => 0x3c00 + i);
    const metadata: Record<string, GgufValue> = {
      'general.architecture': gguf.str('llama'),
      'test.u8': { type: GgufValueType.UINT8, value: 250 },
      'test.i8': { type: GgufValueType.INT8, value: -5 },
      'test.u16': { type: GgufValueType.UINT16, value: 65000 },
      'test.i16': { type: GgufValueType.INT16, value: -300 },
      'test.u32': gguf.u32(4_000_000_000),
      'test.i32': gguf.i32(-2_000_000_000),
      'test.f32': gguf.f32(0.25),
      'test.bool': gguf.bool(true),
      'test.u64': { type: GgufValueType.UINT64, value: 2n ** 40n },
      'test.i64': { type: GgufValueType.INT64, value: -(2n ** 40n) },
      'test.f64': { type: GgufValueType.FLOAT64, value: Math.PI },
      'test.utf8': gguf.str('héllo ✓ Ġworld'),
      'test.strings': gguf.strings(['a', '', 'Ġb c']),
      'test.ints': gguf.i32s([1, -2, 3]),
    };
    const size = await writeGguf(path, {
      metadata,
      tensors: [
        { name: 'a.weight', shape: [3, 5], type: GgmlType.F32, data: async () => bytesOf(a) },
        { name: 'b', shape: [7], type: GgmlType.F16, data: async () => bytesOf(b) },
        { name: 'c', shape: [2, 2], type: GgmlType.F32, data: async () => bytesOf(new Float32Array([1, 2, 3, 4])) },
      ],
    });
    const raw = await readFile(path);
    expect(raw.length).toBe(size);
    expect(raw.subarray(0, 4).toString('latin1')).toBe('GGUF');
    expect(raw.readUInt32LE(4)).toBe(3);

    const f = await readGguf(path);
    expect(f.version).toBe(3);
    expect(f.alignment).toBe(32);
    expect(f.dataOffset % 32).toBe(0);
    for (const [k, v] of Object.entries(metadata)) {
      const got = f.metadata.get(k)!;
      expect(got.type).toBe(v.type);
      if (v.type === GgufValueType.FLOAT32) expect(got.value).toBeCloseTo(v.value as number, 7);
      else expect(got.value).toEqual(v.value);
    }
    expect(f.tensors.map((t) => [t.name, t.dims, t.type])).toEqual([
      ['a.weight', [5, 3], GgmlType.F32],
      ['b', [7], GgmlType.F16],
      ['c', [2, 2], GgmlType.F32],
    ]);
    expect(f.tensors.map((t) => t.offset)).toEqual([0, 64, 96]); // 60 bytes -> 64, 14 bytes -> 32
    expect(new Float32Array((await readGgufTensor(path, f, 'a.weight')).slice().buffer)).toEqual(a);
    expect(new Uint16Array((await readGgufTensor(path, f, 'b')).slice().buffer)).toEqual(b);
    expect(new Float32Array((await readGgufTensor(path, f, 'c')).slice().buffer)).toEqual(new Float32Array([1, 2, 3, 4]));
  });

  it('a tensor source giving the wrong byte count is an error; a truncated file fails to parse', async () => {
    const path = join(dir, 'bad.gguf');
    await expect(
      writeGguf(path, { metadata: {}, tensors: [{ name: 'x', shape: [4], type: GgmlType.F32, data: async () => new Uint8Array(8) }] }),
    ).rejects.toThrow(/gave 8 bytes, expected 16/);
    const good = join(dir, 'good.gguf');
    await writeGguf(good, {
      metadata: { k: gguf.str('v') },
      tensors: [{ name: 'x', shape: [64], type: GgmlType.F32, data: async () => new Uint8Array(256) }],
    });
    const bytes = await readFile(good);
    await writeFile(path, bytes.subarray(0, bytes.length - 100));
    await expect(readGguf(path)).rejects.toThrow(/past the end/);
    await writeFile(path, bytes.subarray(0, 30));
    await expect(readGguf(path)).rejects.toThrow(/truncated/);
    await writeFile(path, Buffer.from('not a gguf file at all'));
    await expect(readGguf(path)).rejects.toThrow(/bad magic/);
  });

  it('RoPE row permutation moves row a*(d/2)+i of each head to 2i+a', () => {
    // 2 heads of 4 rows, 1 column: head rows [0,1,2,3] -> [0,2,1,3]
    const v = Float32Array.from([0, 1, 2, 3, 10, 11, 12, 13]);
    expect(Array.from(permuteRopeRows(v, 8, 1, 2))).toEqual([0, 2, 1, 3, 10, 12, 11, 13]);
    const w = Uint16Array.from({ length: 8 * 3 }, (_, i) => i);
    const p = permuteRopeRows(w, 8, 3, 1); // 1 head of 8 rows: [0,4,1,5,2,6,3,7]
    expect(Array.from(p.subarray(3, 6))).toEqual([12, 13, 14]);
    expect(p).toBeInstanceOf(Uint16Array);
  });
});

describe('GGUF export of a llama folder', () => {
  it('writes llama hyperparameters, the tokenizer and every tensor (f16 matrices, f32 norms, Q/K permuted)', async () => {
    const model = await generateTestModel(join(dir, 'model'), { preset: 'tiny', dtype: 'f32', seed: 3 });
    const out = join(dir, 'tiny-f16.gguf');
    const r = await exportGguf(model.dir, out, { dtype: 'f16' });
    const f = await readGguf(out);
    const spec = await loadModelSpec(model.dir);
    const meta = (k: string) => f.metadata.get(k)?.value;
    expect(meta('general.architecture')).toBe('llama');
    expect(meta('general.file_type')).toBe(1);
    expect(meta('llama.block_count')).toBe(spec.numLayers);
    expect(meta('llama.embedding_length')).toBe(spec.hiddenSize);
    expect(meta('llama.attention.head_count_kv')).toBe(spec.numKvHeads);
    expect(meta('llama.rope.dimension_count')).toBe(spec.headDim);
    expect(meta('llama.context_length')).toBe(spec.contextLength);
    expect((meta('tokenizer.ggml.tokens') as string[]).length).toBe(spec.vocabSize);
    expect(meta('tokenizer.ggml.model')).toBe('gpt2');
    expect(meta('tokenizer.ggml.eos_token_id')).toBe(spec.eosTokenIds[0]);
    expect(r.tensors).toBe(f.tensors.length);
    expect(f.tensors.length).toBe(2 + 9 * spec.numLayers + (spec.tiedEmbeddings ? 0 : 1));
    const info = (n: string) => f.tensors.find((t) => t.name === n)!;
    expect(info('blk.0.attn_norm.weight').type).toBe(GgmlType.F32);
    expect(info('blk.0.attn_q.weight').type).toBe(GgmlType.F16);
    expect(info('blk.0.attn_q.weight').dims).toEqual([spec.hiddenSize, spec.numHeads * spec.headDim]);
    expect(info('token_embd.weight').dims).toEqual([spec.hiddenSize, spec.vocabSize]);

    const weights = await openModelWeights(model.dir);
    try {
      const l0 = spec.weights.layers[0]!;
      const v = await weights.read(l0.vProj.name, 'f16');
      expect(new Uint16Array((await readGgufTensor(out, f, 'blk.0.attn_v.weight')).slice().buffer)).toEqual(v);
      const k = await weights.read(l0.kProj.name, 'f16');
      const kOut = new Uint16Array((await readGgufTensor(out, f, 'blk.0.attn_k.weight')).slice().buffer);
      expect(kOut).not.toEqual(k);
      expect(kOut).toEqual(permuteRopeRows(k, l0.kProj.shape[0]!, spec.hiddenSize, spec.numKvHeads));
      const norm = await weights.read(l0.inputNorm.name, 'f32');
      expect(new Float32Array((await readGgufTensor(out, f, 'blk.0.attn_norm.weight')).slice().buffer)).toEqual(norm);
    } finally {
      await weights.close();
    }
  });

  it('refuses architectures llama.cpp would read differently, with the reasons', async () => {
    const qwen = await generateTestModel(join(dir, 'qwen'), { preset: 'tiny', architecture: 'qwen2', dtype: 'f32' });
    await expect(exportGguf(qwen.dir, join(dir, 'q.gguf'), { dtype: 'f32' })).rejects.toThrow(/architecture qwen2.*attention biases/);
  });
});
