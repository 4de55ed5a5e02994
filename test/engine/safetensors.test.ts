import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelSpec } from '../../src/engine/model/config.js';
import {
  countNonFiniteF16,
  countNonFiniteF32,
  f16BitsToNumber,
  float32ToBf16Bits,
  float32ToF16Bits,
  numberToF16Bits,
  toFloat16Bits,
  toFloat32,
} from '../../src/engine/model/dtype-convert.js';
import { openModelWeights } from '../../src/engine/model/sharded.js';
import { SafetensorsFile } from '../../src/engine/model/safetensors.js';
import { isAutoGlmError } from '../../src/errors.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { writeSafetensors } from '../../src/testing/safetensors-writer.js';
import { rewriteHeader } from '../helpers/safetensors-header.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'st-test-'));
  dirs.push(d);
  return d;
}

describe('dtype conversion', () => {
  it('f32 -> f16 rounds to nearest even, saturates to Inf, keeps subnormals', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519, 0x7bff],
      [65520, 0x7c00],
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [3 * 2 ** -26, 0x0001],
      [2 ** -14, 0x0400],
      [1 + 2 ** -11, 0x3c00], // tie: round to even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // tie: round to even (up)
      [0.1, 0x2e66],
      [-0, 0x8000],
    ];
    for (const [v, bits] of cases) expect(numberToF16Bits(v), String(v)).toBe(bits);
    expect(Number.isNaN(f16BitsToNumber(numberToF16Bits(NaN)))).toBe(true);
    for (const [v, bits] of cases)
      if (Math.abs(v) <= 65504 && bits !== 0x7c00)
        expect(Math.abs(f16BitsToNumber(bits) - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25);
  });

  it('non-finite counts: every position, odd lengths and unaligned views, largest finite values not counted', () => {
    for (const len of [1, 2, 7, 8, 33]) {
      for (const at of [0, len - 1, len >> 1]) {
        for (const bad of [NaN, Infinity, -Infinity]) {
          const f = new Float32Array(len).fill(3.4e38);
          f[at] = bad;
          expect(countNonFiniteF32(f)).toBe(1);
          const h = new Uint16Array(len + 1).fill(0xfbff); // -65504, f16's largest finite
          const view = h.subarray(1); // starts 2 bytes in: not 4-byte aligned
          view[at] = numberToF16Bits(bad);
          expect([countNonFiniteF16(view), countNonFiniteF16(h.subarray(0, len))]).toEqual([1, at === len - 1 ? 0 : 1]);
        }
      }
      expect(countNonFiniteF32(new Float32Array(len).fill(-3.4e38))).toBe(0);
      expect(countNonFiniteF16(new Uint16Array(len).fill(0x7bff))).toBe(0);
    }
    expect(countNonFiniteF16(float32ToF16Bits(Float32Array.of(1, 7e4, -1e5, NaN, 2)))).toBe(3);
  });

  it('bf16 and f16 bytes -> f32 exactly; f32 -> bf16 rounds to nearest even', () => {
    const values = new Float32Array([1, -3.5, 0.1, 1e-30, 3e38]);
    const bf = float32ToBf16Bits(values);
    expect(Array.from(bf.slice(0, 2))).toEqual([0x3f80, 0xc060]);
    expect(bf[2]).toBe(0x3dcd); // 0.1 = 0x3dcccccd -> rounds up
    const back = toFloat32(new Uint8Array(bf.buffer), 'BF16');
    for (let i = 0; i < values.length; i++) expect(Math.abs(back[i]! - values[i]!)).toBeLessThanOrEqual(Math.abs(values[i]!) * 2 ** -8);
    const f16 = float32ToF16Bits(values);
    expect(Array.from(toFloat16Bits(new Uint8Array(bf.buffer), 'BF16').slice(0, 2))).toEqual([0x3c00, 0xc300]);
    expect(Array.from(toFloat32(new Uint8Array(f16.buffer), 'F16').slice(0, 3))).toEqual([1, -3.5, f16BitsToNumber(0x2e66)]);
    // unaligned source bytes are handled (copied)
    const raw = new Uint8Array(9);
    raw.set(new Uint8Array(new Float32Array([2, 4]).buffer), 1);
    expect(Array.from(toFloat32(raw.subarray(1), 'F32'))).toEqual([2, 4]);
  });
});

describe('safetensors reader', () => {
  it('round-trips f32/f16/bf16 and reads row ranges', async () => {
    const dir = tempDir();
    const values = new Float32Array(6 * 5).map((_, i) => (i - 11) / 8);
    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      const path = join(dir, `${dtype}.safetensors`);
      const bytes = await writeSafetensors(
        path,
        [
          { name: 'a', shape: [6, 5] },
          { name: 'empty', shape: [0, 5] },
        ],
        dtype,
        (t) => (t.name === 'a' ? values.slice() : new Float32Array(0)),
      );
      const f = await SafetensorsFile.open(path);
      expect(f.fileBytes).toBe(bytes);
      expect(f.info('a')).toMatchObject({
        dtype: { f32: 'F32', f16: 'F16', bf16: 'BF16' }[dtype],
        shape: [6, 5],
        byteLength: 30 * (dtype === 'f32' ? 4 : 2),
      });
      const raw = await f.readBytes('a');
      expect(Array.from(toFloat32(raw, f.info('a').dtype as 'F32'))).toEqual(Array.from(values)); // all exact in bf16
      const rows = toFloat32(await f.readBytes('a', { rowStart: 2, rowCount: 3 }), f.info('a').dtype as 'F32');
      expect(Array.from(rows)).toEqual(Array.from(values.subarray(10, 25)));
      expect((await f.readBytes('empty')).byteLength).toBe(0);
      await f.close();
    }
  });
});

async function loadError(dir: string): Promise<Error & { code: string }> {
  const spec = await loadModelSpec(dir);
  const e = await openModelWeights(dir, { spec }).then(
    async (w) => {
      await w.close();
      throw new Error('expected the folder to fail');
    },
    (x: unknown) => x,
  );
  expect(isAutoGlmError(e)).toBe(true);
  return e as Error & { code: string };
}

describe('corrupted model folders give clear errors naming file and tensor', async () => {
  const template = tempDir();
  await generateTestModel(template, { architecture: 'llama', layers: 1, seed: 3 });
  const fresh = (): { dir: string; file: string } => {
    const dir = tempDir();
    for (const f of ['config.json', 'model.safetensors']) writeFileSync(join(dir, f), readFileSync(join(template, f)));
    return { dir, file: join(dir, 'model.safetensors') };
  };
  const Q = 'model.layers.0.self_attn.q_proj.weight';
  const K = 'model.layers.0.self_attn.k_proj.weight';

  it('the intact folder opens and validates', async () => {
    const { dir } = fresh();
    const w = await openModelWeights(dir, { spec: await loadModelSpec(dir) });
    expect(w.tensorNames).toContain(Q);
    await w.close();
  });

  it('truncated file', async () => {
    const { dir, file } = fresh();
    truncateSync(file, readFileSync(file).length - 10);
    const e = await loadError(dir);
    expect(e.code).toBe('invalid_safetensors');
    expect(e.message).toContain(file);
    expect(e.message).toContain('lm_head.weight'); // the last tensor written
    expect(e.message).toMatch(/run past .* data section/);
  });

  it('header length past the end of the file, and a file shorter than 8 bytes', async () => {
    const a = fresh();
    const buf = readFileSync(a.file);
    buf.writeBigUInt64LE(BigInt(buf.length), 0);
    writeFileSync(a.file, buf);
    expect((await loadError(a.dir)).message).toMatch(/header length \d+ runs past the end/);
    const b = fresh();
    writeFileSync(b.file, Buffer.from([1, 2, 3]));
    expect((await loadError(b.dir)).message).toContain('shorter than the 8-byte header length');
  });

  it('header that is not JSON', async () => {
    const { dir, file } = fresh();
    const buf = readFileSync(file);
    buf.write('#', 8);
    writeFileSync(file, buf);
    const e = await loadError(dir);
    expect(e.message).toContain(file);
    expect(e.message).toContain('not valid JSON');
  });

  it('overlapping offsets', async () => {
    const { dir, file } = fresh();
    rewriteHeader(file, (h) => {
      const q = h[Q]!.data_offsets;
      const k = h[K]!;
      const kBytes = k.data_offsets[1]! - k.data_offsets[0]!;
      k.data_offsets = [q[0]! + 4, q[0]! + 4 + kBytes];
    });
    const e = await loadError(dir);
    expect(e.code).toBe('invalid_safetensors');
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/overlap/);
    expect(e.message).toMatch(/q_proj|k_proj/);
  });

  it('out-of-range offsets and a size that does not match the shape', async () => {
    const a = fresh();
    rewriteHeader(a.file, (h) => (h[Q]!.data_offsets = [10 ** 9, 10 ** 9 + 64 * 64 * 4]));
    const e1 = await loadError(a.dir);
    expect(e1.message).toContain(`tensor "${Q}"`);
    expect(e1.message).toContain('run past');
    const b = fresh();
    rewriteHeader(b.file, (h) => (h[Q]!.data_offsets = [h[Q]!.data_offsets[0]!, h[Q]!.data_offsets[1]! - 4]));
    const e2 = await loadError(b.dir);
    expect(e2.message).toContain(`tensor "${Q}"`);
    expect(e2.message).toMatch(/holds \d+ bytes but shape \[64, 64\] of F32 needs 16384/);
  });

  it('missing tensor', async () => {
    const { dir, file } = fresh();
    rewriteHeader(file, (h) => delete h[K]);
    const e = await loadError(dir);
    expect(e.code).toBe('invalid_safetensors');
    expect(e.message).toContain(file);
    expect(e.message).toContain(`tensor "${K}": missing`);
  });

  it('a missing LM head names tie_word_embeddings, the key that asks for it', async () => {
    const { dir, file } = fresh();
    rewriteHeader(file, (h) => delete h['lm_head.weight']);
    const e = await loadError(dir);
    expect(e.code).toBe('invalid_safetensors');
    // used to end at 'tensor "lm_head.weight": missing'
    expect(e.message).toBe(
      `${file}: tensor "lm_head.weight": missing, and config.json leaves the embeddings untied ` +
        '(tie_word_embeddings false or absent), so the checkpoint must hold its own LM head',
    );
  });

  it('wrong shape (same bytes)', async () => {
    const { dir, file } = fresh();
    rewriteHeader(file, (h) => (h[K]!.shape = [64, 32]));
    const e = await loadError(dir);
    expect(e.message).toContain(file);
    expect(e.message).toContain(`tensor "${K}": shape [64, 32] does not match [32, 64]`);
  });

  it('unknown dtype, and a known one the engine cannot use', async () => {
    const a = fresh();
    rewriteHeader(a.file, (h) => (h[Q]!.dtype = 'F99'));
    expect((await loadError(a.dir)).message).toContain(`tensor "${Q}": unknown dtype "F99"`);
    const b = fresh();
    rewriteHeader(b.file, (h) => (h[Q]!.dtype = 'I32'));
    const e = await loadError(b.dir);
    expect(e.message).toContain(b.file);
    expect(e.message).toContain(`tensor "${Q}": dtype I32 is not supported (F32, F16, BF16, and F8_E4M3 with block scales)`);
  });

  it('a folder or a FIFO where model.safetensors should be is refused by name', async () => {
    // a folder used to fail as "cannot load the model in DIR: EISDIR", naming no file
    const a = fresh();
    unlinkSync(a.file);
    mkdirSync(a.file);
    const e1 = await loadError(a.dir);
    expect(e1.code).toBe('invalid_safetensors');
    expect(e1.message).toBe(`${a.file}: is a folder, not a file`);
    // a FIFO used to block the load forever in open()
    const b = fresh();
    unlinkSync(b.file);
    execFileSync('mkfifo', [b.file]);
    const e2 = await loadError(b.dir);
    expect(e2.message).toBe(`${b.file}: is a FIFO, not a file`);
  });

  it('a dangling or looping symbolic link for model.safetensors names the link and its target', async () => {
    // used to say "neither model.safetensors nor ... found (folder holds: ..., model.safetensors, ...)"
    const a = fresh();
    unlinkSync(a.file);
    symlinkSync('../../blobs/4d7a2146', a.file);
    const e1 = await loadError(a.dir);
    expect(e1.code).toBe('invalid_safetensors');
    expect(e1.message).toBe(
      `${a.file}: is a symbolic link to ../../blobs/4d7a2146, whose target does not exist (an interrupted download?)`,
    );
    const b = fresh();
    unlinkSync(b.file);
    symlinkSync('model.safetensors', b.file);
    expect((await loadError(b.dir)).message).toBe(`${b.file}: is a symbolic link to model.safetensors, which loops back on itself`);
  });

  it('no weights at all', async () => {
    const { dir, file } = fresh();
    unlinkSync(file);
    const e = await loadError(dir);
    expect(e.code).toBe('model_load_failed');
    expect(e.message).toContain('neither model.safetensors nor model.safetensors.index.json');
  });
});

describe('weights whose values cannot be served are refused by tensor when read', async () => {
  const DTYPES = ['f32', 'f16', 'bf16'] as const;
  const templates = new Map<string, string>();
  for (const dtype of DTYPES) {
    const dir = tempDir();
    await generateTestModel(dir, { architecture: 'llama', layers: 1, seed: 4, dtype });
    templates.set(dtype, dir);
  }
  const Q = 'model.layers.0.self_attn.q_proj.weight';

  /** A copy of a template with `count` values of q_proj from element 7 on set to `value`. */
  async function withValues(
    template: (typeof DTYPES)[number],
    value: number,
    count: number,
  ): Promise<{ dir: string; file: string; dtype: string }> {
    const dir = tempDir();
    for (const f of ['config.json', 'model.safetensors']) writeFileSync(join(dir, f), readFileSync(join(templates.get(template)!, f)));
    const file = join(dir, 'model.safetensors');
    const f = await SafetensorsFile.open(file);
    const { fileOffset, dtype } = f.info(Q);
    await f.close();
    const buf = readFileSync(file);
    for (let i = 7; i < 7 + count; i++) {
      if (dtype === 'F32') buf.writeFloatLE(value, fileOffset + 4 * i);
      else if (dtype === 'F16') buf.writeUInt16LE(numberToF16Bits(value), fileOffset + 2 * i);
      else buf.writeUInt16LE(float32ToBf16Bits(Float32Array.of(value))[0]!, fileOffset + 2 * i);
    }
    writeFileSync(file, buf);
    return { dir, file, dtype };
  }

  async function readError(dir: string, as: 'f32' | 'f16'): Promise<Error & { code: string }> {
    const w = await openModelWeights(dir, { spec: await loadModelSpec(dir) });
    try {
      const e = await w.read(Q, as as 'f32').then(
        () => new Error('expected the read to fail'),
        (x: unknown) => x,
      );
      expect(isAutoGlmError(e)).toBe(true);
      return e as Error & { code: string };
    } finally {
      await w.close();
    }
  }

  it('NaN or infinite values in the file: invalid_safetensors with the count, for either upload dtype', async () => {
    for (const [template, value] of DTYPES.flatMap((d) => [NaN, -Infinity].map((v) => [d, v] as const))) {
      const { dir, file } = await withValues(template, value, 3);
      for (const as of ['f32', 'f16'] as const) {
        const e = await readError(dir, as);
        expect(e.code).toBe('invalid_safetensors');
        expect(e.message).toContain(file);
        expect(e.message).toContain(`tensor "${Q}"`);
        expect(e.message).toMatch(/3 of its \w+ values are NaN or infinite/);
      }
    }
  });

  it('finite values beyond f16 range: refused for f16 upload with the --force-f32 way out, read exactly as f32', async () => {
    for (const template of ['f32', 'bf16'] as const) {
      const { dir, dtype } = await withValues(template, 1e5, 2);
      const e = await readError(dir, 'f16');
      expect(e.code).toBe('model_load_failed');
      expect(e.message).toContain(`tensor "${Q}": 2 ${dtype} values lie beyond f16's range`);
      expect(e.message).toContain('--force-f32');
      const w = await openModelWeights(dir, { spec: await loadModelSpec(dir) });
      const q = await w.read(Q, 'f32');
      await w.close();
      expect(q[7]).toBeCloseTo(1e5, -3); // bf16 keeps 8 bits of mantissa
      expect(q[8]).toBe(q[7]);
      expect(q.every(Number.isFinite)).toBe(true);
    }
  });
});

describe('sharded folders', async () => {
  const dir = tempDir();
  await generateTestModel(dir, { architecture: 'qwen3', sharded: true, shards: 3, seed: 4, dtype: 'bf16' });
  const single = tempDir();
  await generateTestModel(single, { architecture: 'qwen3', seed: 4, dtype: 'bf16' });

  it('read the same tensors as the single-file model', async () => {
    const spec = await loadModelSpec(dir);
    const a = await openModelWeights(dir, { spec });
    const b = await openModelWeights(single, { spec });
    expect(a.files).toHaveLength(3);
    expect([...a.tensorNames].sort()).toEqual([...b.tensorNames].sort());
    for (const name of a.tensorNames) expect(await a.read(name, 'f16')).toEqual(await b.read(name, 'f16'));
    await a.close();
    await b.close();
  });

  it('missing shard file, and an index pointing at the wrong shard', async () => {
    const broken = tempDir();
    for (const f of [
      'config.json',
      'model.safetensors.index.json',
      'model-00001-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
    ]) {
      writeFileSync(join(broken, f), readFileSync(join(dir, f)));
    }
    const e = await loadError(broken);
    expect(e.code).toBe('invalid_safetensors');
    expect(e.message).toContain('model.safetensors.index.json');
    expect(e.message).toContain('shard model-00002-of-00003.safetensors');
    expect(e.message).toContain('is missing');

    writeFileSync(join(broken, 'model-00002-of-00003.safetensors'), readFileSync(join(dir, 'model-00002-of-00003.safetensors')));
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    index.weight_map['model.norm.weight'] = 'model-00001-of-00003.safetensors';
    writeFileSync(join(broken, 'model.safetensors.index.json'), JSON.stringify(index));
    const e2 = await loadError(broken);
    expect(e2.message).toContain(join(broken, 'model-00001-of-00003.safetensors'));
    expect(e2.message).toContain('tensor "model.norm.weight": listed in model.safetensors.index.json but not in this shard');
  });

  it('a shard that is a dangling symbolic link is reported as one, not as missing', async () => {
    const broken = tempDir();
    for (const f of readdirSync(dir)) writeFileSync(join(broken, f), readFileSync(join(dir, f)));
    unlinkSync(join(broken, 'model-00002-of-00003.safetensors'));
    symlinkSync('/nonexistent/blob', join(broken, 'model-00002-of-00003.safetensors'));
    const e = await loadError(broken);
    expect(e.code).toBe('invalid_safetensors');
    expect(e.message).toBe(
      `${join(broken, 'model-00002-of-00003.safetensors')}: is a symbolic link to /nonexistent/blob, whose target does not exist (an interrupted download?)`,
    );
  });

  it('an index naming the folder itself ("") or a folder as a shard is refused by name', async () => {
    const broken = tempDir();
    for (const f of readdirSync(dir)) writeFileSync(join(broken, f), readFileSync(join(dir, f)));
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    // "" joined to the folder is the folder: it used to fail as a bare EISDIR
    writeFileSync(
      join(broken, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { ...index.weight_map, 'model.norm.weight': '' } }),
    );
    const e = await loadError(broken);
    expect(e.code).toBe('invalid_safetensors');
    expect(e.message).toContain('tensor "model.norm.weight" maps to "", not a file name in the folder');
    mkdirSync(join(broken, 'shard-folder'));
    writeFileSync(
      join(broken, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { ...index.weight_map, 'model.norm.weight': 'shard-folder' } }),
    );
    expect((await loadError(broken)).message).toBe(`${join(broken, 'shard-folder')}: is a folder, not a file`);
  });
});
