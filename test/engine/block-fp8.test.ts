/**
 * Block-quantized FP8 weights through the weight reader (block-fp8.ts, sharded.ts): whole
 * tensors and row ranges crossing block boundaries, as f32 and f16, against the definition
 * w = fp8 * scale_inv[n / bn][k / bk] computed here from the file's raw bytes; and the
 * checkpoints it must refuse, by tensor.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dequantizeBlockFp8, scaleRowsFor } from '../../src/engine/model/block-fp8.js';
import { loadModelSpec } from '../../src/engine/model/config.js';
import { f8E4m3BitsToNumber, float32ToF16Bits, toFloat32, type SafetensorsDtype } from '../../src/engine/model/dtype-convert.js';
import { SafetensorsFile } from '../../src/engine/model/safetensors.js';
import { openModelWeights, type ModelWeights } from '../../src/engine/model/sharded.js';
import { isAutoGlmError } from '../../src/errors.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { writeSafetensors, type TensorWriteDtype } from '../../src/testing/safetensors-writer.js';
import { rewriteHeader } from '../helpers/safetensors-header.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fp8-test-'));
  dirs.push(d);
  return d;
}

/** Not multiples of the model's sizes (hidden 64, q 64, k/v 32, intermediate 100): partial last blocks both ways. */
const BLOCK: [number, number] = [16, 24];
const Q = 'model.layers.0.self_attn.q_proj.weight';
const K = 'model.layers.0.self_attn.k_proj.weight';
const DOWN = 'model.layers.0.mlp.down_proj.weight';
const GATE = 'model.layers.0.mlp.gate_proj.weight';

describe('dequantizeBlockFp8 and scaleRowsFor, by hand', () => {
  it('each value times its own block scale, partial blocks at the ends, from a row range in the middle', () => {
    // [5, 3] weight in [2, 2] blocks: scales [3, 2]
    const bytes = Uint8Array.from([0x38, 0x40, 0xb8, 0x30, 0x00, 0x7e, 0x01, 0x39, 0x3a, 0x38, 0x38, 0x38, 0xc0, 0x38, 0x48]);
    const scales = Float32Array.from([2, 3, 5, 7, 11, 13]);
    const s = (n: number, k: number): number => scales[Math.floor(n / 2) * 2 + Math.floor(k / 2)]!;
    const want = Array.from(bytes, (b, i) => Math.fround(f8E4m3BitsToNumber(b) * s(Math.floor(i / 3), i % 3)));
    expect(want.slice(0, 6)).toEqual([2, 4, -3, 1, 0, 448 * 3]);
    expect(Array.from(dequantizeBlockFp8(bytes, scales, { rowStart: 0, rowCount: 5, cols: 3, blockSize: [2, 2] }))).toEqual(want);
    // rows 1..3: blocks rows 0 and 1 of the scales
    expect(scaleRowsFor({ rowStart: 1, rowCount: 3 }, 2)).toEqual({ rowStart: 0, rowCount: 2 });
    expect(scaleRowsFor({ rowStart: 3, rowCount: 2 }, 2)).toEqual({ rowStart: 1, rowCount: 2 });
    expect(scaleRowsFor({ rowStart: 4, rowCount: 1 }, 2)).toEqual({ rowStart: 2, rowCount: 1 });
    expect(scaleRowsFor({ rowStart: 3, rowCount: 0 }, 2).rowCount).toBe(0);
    const rows = dequantizeBlockFp8(bytes.subarray(9, 15), scales.subarray(2), { rowStart: 3, rowCount: 2, cols: 3, blockSize: [2, 2] });
    expect(Array.from(rows)).toEqual(want.slice(9, 15));
  });
});

/** The definition, from the file's bytes: fp8 decoded times its block's scale, rounded to f32. */
async function definition(file: string, name: string, rows?: { rowStart: number; rowCount: number }): Promise<Float32Array> {
  const f = await SafetensorsFile.open(file);
  try {
    const [N, K] = f.info(name).shape as [number, number];
    const bytes = await f.readBytes(name);
    const scaleInfo = f.info(`${name}_scale_inv`);
    const scales = toFloat32(await f.readBytes(scaleInfo.name), scaleInfo.dtype as SafetensorsDtype);
    const cols = Math.ceil(K / BLOCK[1]);
    const { rowStart, rowCount } = rows ?? { rowStart: 0, rowCount: N };
    const out = new Float32Array(rowCount * K);
    for (let n = rowStart; n < rowStart + rowCount; n++)
      for (let k = 0; k < K; k++)
        out[(n - rowStart) * K + k] =
          f8E4m3BitsToNumber(bytes[n * K + k]!) * scales[Math.floor(n / BLOCK[0]) * cols + Math.floor(k / BLOCK[1])]!;
    return out;
  } finally {
    await f.close();
  }
}

async function openWithSpec(dir: string): Promise<ModelWeights> {
  return openModelWeights(dir, { spec: await loadModelSpec(dir) });
}

async function failureOf(run: () => Promise<unknown>): Promise<Error & { code: string }> {
  const e = await run().then(
    () => new Error('expected a failure'),
    (x: unknown) => x,
  );
  expect(isAutoGlmError(e), String(e)).toBe(true);
  return e as Error & { code: string };
}

describe('the reader dequantizes F8_E4M3 weights with their block scales', async () => {
  const template = tempDir();
  await generateTestModel(template, { architecture: 'llama', layers: 1, intermediate: 100, seed: 5, fp8: { blockSize: BLOCK } });
  const file = join(template, 'model.safetensors');
  const fresh = (): { dir: string; file: string } => {
    const dir = tempDir();
    for (const f of ['config.json', 'model.safetensors']) writeFileSync(join(dir, f), readFileSync(join(template, f)));
    return { dir, file: join(dir, 'model.safetensors') };
  };

  it('the generated checkpoint is what FP8 exports look like', async () => {
    const spec = await loadModelSpec(template);
    expect(spec.quantization).toEqual({ method: 'fp8', blockSize: BLOCK });
    const f = await SafetensorsFile.open(file);
    try {
      expect(f.info(Q)).toMatchObject({ dtype: 'F8_E4M3', shape: [64, 64] });
      expect(f.info(`${Q}_scale_inv`)).toMatchObject({ dtype: 'F32', shape: [4, 3] });
      expect(f.info(DOWN)).toMatchObject({ dtype: 'F8_E4M3', shape: [64, 100] });
      expect(f.info(`${DOWN}_scale_inv`)).toMatchObject({ dtype: 'F32', shape: [4, 5] });
      expect(f.info(`${GATE}_scale_inv`).shape).toEqual([7, 3]);
      for (const plain of ['model.embed_tokens.weight', 'lm_head.weight', 'model.norm.weight', 'model.layers.0.input_layernorm.weight'])
        expect(f.info(plain).dtype, plain).toBe('BF16');
    } finally {
      await f.close();
    }
  });

  it('whole tensors, as f32 (the definition exactly) and as f16 (those values rounded)', async () => {
    const w = await openWithSpec(template);
    try {
      for (const name of [Q, K, DOWN, GATE]) {
        const want = await definition(file, name);
        const got = await w.read(name, 'f32');
        expect(got, name).toEqual(want);
        expect(got.some((v) => v !== 0)).toBe(true);
        expect(await w.read(name, 'f16')).toEqual(float32ToF16Bits(want));
      }
    } finally {
      await w.close();
    }
  });

  it('row ranges, inside a block, across block boundaries, in the partial last block, empty', async () => {
    const w = await openWithSpec(template);
    try {
      for (const name of [GATE, DOWN, K]) {
        const N = w.info(name).shape[0]!;
        const ranges = [
          { rowStart: 0, rowCount: 1 },
          { rowStart: 3, rowCount: 10 },
          { rowStart: 5, rowCount: 20 }, // crosses row 16
          { rowStart: 15, rowCount: 2 },
          { rowStart: 16, rowCount: 16 }, // exactly one block
          { rowStart: 7, rowCount: N - 9 }, // several blocks
          { rowStart: N - 3, rowCount: 3 }, // the last (partial for 100 rows)
          { rowStart: 9, rowCount: 0 },
        ];
        const K = w.info(name).shape[1]!;
        const whole = await w.read(name, 'f32');
        for (const r of ranges) {
          const want = whole.slice(r.rowStart * K, (r.rowStart + r.rowCount) * K);
          expect(await w.read(name, 'f32', r), `${name} ${JSON.stringify(r)}`).toEqual(want);
          expect(await definition(file, name, r)).toEqual(want);
          expect(await w.read(name, 'f16', r)).toEqual(float32ToF16Bits(want));
        }
        const e = await failureOf(() => w.read(name, 'f32', { rowStart: N - 1, rowCount: 2 }));
        expect(e.message).toContain('out of range');
      }
    } finally {
      await w.close();
    }
  });

  it('sharded: weights and their scales found across shards, the same values as the single file', async () => {
    const dir = tempDir();
    await generateTestModel(dir, {
      architecture: 'llama',
      layers: 1,
      intermediate: 100,
      seed: 5,
      fp8: { blockSize: BLOCK },
      sharded: true,
      shards: 6,
    });
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    const map = index.weight_map;
    // contiguous shards of about equal size put some scales in the shard after their weight
    expect(Object.keys(map).some((n) => n.endsWith('_scale_inv') && map[n] !== map[n.slice(0, -'_scale_inv'.length)])).toBe(true);
    const sharded = await openWithSpec(dir);
    const single = await openWithSpec(template);
    try {
      for (const name of Object.keys(map).filter((n) => sharded.info(n).dtype === 'F8_E4M3')) {
        expect(await sharded.read(name, 'f32'), name).toEqual(await single.read(name, 'f32'));
        expect(await sharded.read(name, 'f16', { rowStart: 20, rowCount: 9 })).toEqual(
          await single.read(name, 'f16', { rowStart: 20, rowCount: 9 }),
        );
      }
    } finally {
      await sharded.close();
      await single.close();
    }
  });

  it('BF16 scales (some exports write them so) are read as well', async () => {
    // the same checkpoint rewritten with every weight_scale_inv in bf16
    const dir = tempDir();
    writeFileSync(join(dir, 'config.json'), readFileSync(join(template, 'config.json')));
    const src = await SafetensorsFile.open(file);
    try {
      const tensors = [...src.tensors.values()].map((t) => ({
        name: t.name,
        shape: t.shape,
        dtype: (t.dtype === 'F8_E4M3' ? 'f8_e4m3' : t.name.endsWith('_scale_inv') ? 'bf16' : 'f32') as TensorWriteDtype,
      }));
      const values = new Map<string, Float32Array>();
      for (const t of src.tensors.values()) {
        const raw = await src.readBytes(t.name);
        values.set(
          t.name,
          t.dtype === 'F8_E4M3' ? Float32Array.from(raw, f8E4m3BitsToNumber) : toFloat32(raw, t.dtype as SafetensorsDtype),
        );
      }
      await writeSafetensors(join(dir, 'model.safetensors'), tensors, 'f32', (t) => values.get(t.name)!);
    } finally {
      await src.close();
    }
    const w = await openWithSpec(dir);
    try {
      expect(w.info(`${Q}_scale_inv`).dtype).toBe('BF16');
      const want = await definition(join(dir, 'model.safetensors'), Q);
      expect(await w.read(Q, 'f32')).toEqual(want);
      expect(await w.read(Q, 'f32', { rowStart: 10, rowCount: 30 })).toEqual(want.slice(640, 40 * 64));
      // bf16 scales moved the values, a little
      const original = await definition(file, Q);
      expect(want).not.toEqual(original);
      for (let i = 0; i < want.length; i++) expect(Math.abs(want[i]! - original[i]!)).toBeLessThanOrEqual(Math.abs(original[i]!) * 2 ** -8);
    } finally {
      await w.close();
    }
  });

  it('missing scales name both tensors', async () => {
    const { dir, file: f } = fresh();
    rewriteHeader(f, (h) => {
      h[`${Q}_scale`] = h[`${Q}_scale_inv`]!;
      delete h[`${Q}_scale_inv`];
    });
    const e = await failureOf(() => openWithSpec(dir));
    expect(e.code).toBe('invalid_safetensors');
    expect(e.message).toContain(f);
    expect(e.message).toContain(`tensor "${Q}": dtype F8_E4M3, but its block scales "${Q}_scale_inv" are missing`);
  });

  it('scales of the wrong shape or dtype are refused with what weight_block_size asks for', async () => {
    const a = fresh();
    rewriteHeader(a.file, (h) => (h[`${Q}_scale_inv`]!.shape = [3, 4])); // same bytes
    const e = await failureOf(() => openWithSpec(a.dir));
    expect(e.code).toBe('invalid_safetensors');
    expect(e.message).toContain(
      `tensor "${Q}": its block scales "${Q}_scale_inv" have shape [3, 4], but a [64, 64] weight in weight_block_size [16, 24] blocks needs [4, 3]`,
    );
    // the same file under a config whose blocks do not fit the scales
    const b = fresh();
    const config = JSON.parse(readFileSync(join(b.dir, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    config['quantization_config']!['weight_block_size'] = [128, 128];
    writeFileSync(join(b.dir, 'config.json'), JSON.stringify(config));
    expect((await failureOf(() => openWithSpec(b.dir))).message).toContain('weight_block_size [128, 128] blocks needs [1, 1]');
    const c = fresh();
    rewriteHeader(c.file, (h) => (h[`${Q}_scale_inv`]!.dtype = 'I32'));
    expect((await failureOf(() => openWithSpec(c.dir))).message).toContain(
      `tensor "${Q}": its block scales "${Q}_scale_inv" have dtype I32; F32, F16 or BF16 expected`,
    );
  });

  it('an F8 tensor in a checkpoint whose config.json has no quantization_config', async () => {
    const { dir, file: f } = fresh();
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    delete config['quantization_config'];
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const e = await failureOf(() => openWithSpec(dir));
    expect(e.code).toBe('invalid_safetensors');
    expect(e.message).toContain(f);
    expect(e.message).toContain(`tensor "${Q}": dtype F8_E4M3, but config.json has no quantization_config`);
  });

  it('weights opened without the spec cannot know the block size, and say so', async () => {
    const w = await openModelWeights(template);
    try {
      const e = await failureOf(() => w.read(Q, 'f32'));
      expect(e.message).toContain(`tensor "${Q}": dtype F8_E4M3 needs config.json quantization_config's weight_block_size`);
      // plain tensors read as ever
      expect((await w.read('model.norm.weight', 'f32')).length).toBe(64);
    } finally {
      await w.close();
    }
  });

  it('F8_E4M3 block scales apply to 2-D weights only; F8_E5M2 is refused by name', async () => {
    const a = fresh();
    // 64 bf16 values = 128 bytes = 128 fp8 values
    rewriteHeader(a.file, (h) => Object.assign(h['model.norm.weight']!, { dtype: 'F8_E4M3', shape: [128] }));
    expect((await failureOf(() => openWithSpec(a.dir))).message).toContain(
      'tensor "model.norm.weight": dtype F8_E4M3 with block scales applies to 2-D weights, not shape [128]',
    );
    const b = fresh();
    rewriteHeader(b.file, (h) => (h[Q]!.dtype = 'F8_E5M2'));
    expect((await failureOf(() => openWithSpec(b.dir))).message).toContain(
      `tensor "${Q}": dtype F8_E5M2 is not supported (F32, F16, BF16, and F8_E4M3 with block scales)`,
    );
  });

  describe('non-finite values are refused when read, saying where they come from', () => {
    /** A copy with `count` q_proj bytes from element 7 on set to `byte`, or one block scale (row 1, column 2) set to `scale`. */
    async function corrupted(change: { byte: number; count: number } | { scale: number }): Promise<{ dir: string; file: string }> {
      const copy = fresh();
      const f = await SafetensorsFile.open(copy.file);
      const weightAt = f.info(Q).fileOffset;
      const scaleAt = f.info(`${Q}_scale_inv`).fileOffset;
      await f.close();
      const buf = readFileSync(copy.file);
      if ('byte' in change) for (let i = 7; i < 7 + change.count; i++) buf[weightAt + i] = change.byte;
      else buf.writeFloatLE(change.scale, scaleAt + 4 * (1 * 3 + 2));
      writeFileSync(copy.file, buf);
      return copy;
    }
    async function readError(dir: string, as: 'f32' | 'f16', rows?: { rowStart: number; rowCount: number }) {
      const w = await openWithSpec(dir);
      try {
        return await failureOf(() => (as === 'f32' ? w.read(Q, 'f32', rows) : w.read(Q, 'f16', rows)));
      } finally {
        await w.close();
      }
    }

    it('NaN bytes (0x7f, 0xff) in the weight', async () => {
      for (const byte of [0x7f, 0xff]) {
        const { dir, file: f } = await corrupted({ byte, count: 3 });
        for (const as of ['f32', 'f16'] as const) {
          const e = await readError(dir, as);
          expect(e.code).toBe('invalid_safetensors');
          expect(e.message).toContain(f);
          expect(e.message).toContain(`tensor "${Q}": 3 of its F8_E4M3 values are NaN or infinite`);
        }
      }
    });

    it('a NaN or infinite block scale, named; rows outside its block read fine', async () => {
      for (const scale of [NaN, Infinity]) {
        const { dir } = await corrupted({ scale });
        const e = await readError(dir, 'f32');
        expect(e.code).toBe('invalid_safetensors');
        expect(e.message).toContain(`tensor "${Q}": 1 of its block scales in "${Q}_scale_inv" are NaN or infinite`);
        // the bad scale covers rows 16..31: a range crossing into them fails, one before them reads
        expect((await readError(dir, 'f16', { rowStart: 10, rowCount: 8 })).code).toBe('invalid_safetensors');
        const w = await openWithSpec(dir);
        expect((await w.read(Q, 'f32', { rowStart: 0, rowCount: 16 })).every(Number.isFinite)).toBe(true);
        await w.close();
      }
    });

    it("a finite scale so large that the products leave f32's range", async () => {
      const { dir } = await corrupted({ scale: 1e38 });
      const e = await readError(dir, 'f32');
      expect(e.code).toBe('invalid_safetensors');
      expect(e.message).toMatch(new RegExp(`\\d+ of its values times their block scales in "${Q}_scale_inv" are NaN or infinite`));
    });

    it("values beyond f16's range: refused for f16 upload with the --force-f32 way out, read as f32", async () => {
      const { dir } = await corrupted({ scale: 1000 });
      const e = await readError(dir, 'f16');
      expect(e.code).toBe('model_load_failed');
      expect(e.message).toMatch(/tensor "[^"]+": \d+ dequantized F8_E4M3 values lie beyond f16's range/);
      expect(e.message).toContain('--force-f32');
      const w = await openWithSpec(dir);
      const q = await w.read(Q, 'f32');
      await w.close();
      expect(q.every(Number.isFinite)).toBe(true);
      expect(Math.max(...q.map(Math.abs))).toBeGreaterThan(65504);
    });
  });
});
