import { describe, expect, it } from 'vitest';
import { destroyEmbeddingTable, embedding, prepareEmbeddingTable, type EmbeddingDType } from '../../src/kernels/embedding.js';
import { f32ToF16Bits, halfToFloat } from '../../src/kernels/runtime.js';
import { isAutoGlmError } from '../../src/errors.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, roundTo, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { gatherRowsRef } from '../reference/embedding.js';

const runtime = useRuntime();

describe('embedding', () => {
  // maxPartBytes forces several parts (and odd f16 part sizes) on small tables
  const cases = [
    { vocab: 1, dim: 1, rows: 1, maxPartBytes: undefined },
    { vocab: 7, dim: 7, rows: 33, maxPartBytes: 3 * 7 * 4 },
    { vocab: 129, dim: 33, rows: 7, maxPartBytes: undefined },
    { vocab: 1000, dim: 129, rows: 129, maxPartBytes: 128 * 129 * 4 },
    { vocab: 300, dim: 4097, rows: 5, maxPartBytes: 1 << 20 },
    { vocab: 513, dim: 64, rows: 4097, maxPartBytes: 100 * 64 * 4 },
  ];
  for (const dtype of ['f32', 'f16'] as const satisfies readonly EmbeddingDType[]) {
    for (const c of cases) {
      it(`${dtype} vocab=${c.vocab} dim=${c.dim} rows=${c.rows} parts<=${c.maxPartBytes ?? 'binding'}B`, async () => {
        const rt = runtime();
        const rng = new Rng(c.vocab * 7 + c.dim * 13 + c.rows + (dtype === 'f16' ? 1 : 0));
        const values = roundTo(dtype, rng.floats(c.vocab * c.dim, -2, 2));
        const table = prepareEmbeddingTable(rt, {
          data: dtype === 'f16' ? f32ToF16Bits(values) : values,
          vocab: c.vocab,
          dim: c.dim,
          dtype,
          maxPartBytes: c.maxPartBytes,
        });
        if (c.maxPartBytes) expect(table.parts.length).toBeGreaterThan(1);
        // every id in range, plus a few out-of-range ones that must give zero rows
        const ids = Uint32Array.from({ length: c.rows }, (_, i) => (i % 11 === 5 ? c.vocab + i : rng.int(c.vocab)));
        if (c.rows > 1) ids[c.rows - 1] = 0xffffffff;
        const out = poisoned(rt, 'f32', c.rows * c.dim);
        const rec = rt.recorder();
        embedding(rt, rec, { ids: rt.upload('u32', ids), out, rows: c.rows, dim: c.dim, parts: table.parts });
        await rec.submit();
        const got = await rt.readFloats(out);
        // values are already rounded to the table's dtype, so the gather itself is exact
        expect(relativeError(got, gatherRowsRef(values, c.vocab, c.dim, ids))).toBeLessThanOrEqual(TOLERANCE.f32);
        destroyEmbeddingTable(rt, table);
      });
    }
  }

  it('splits a table larger than one storage binding at the binding limit', async () => {
    const rt = runtime();
    const dim = 1024;
    const vocab = Math.floor(rt.maxBindingBytes / (dim * 2)) + 1000;
    // cheap deterministic f16 bit patterns (finite: exponent field never 31)
    const bits = new Uint16Array(vocab * dim);
    for (let i = 0; i < bits.length; i++) bits[i] = (Math.imul(i, 2654435761) >>> 16) & 0xbbff;
    const table = prepareEmbeddingTable(rt, { data: bits, vocab, dim, dtype: 'f16' });
    expect(table.parts.length).toBe(2);
    expect(table.parts[0]!.rowCount * dim * 2).toBeLessThanOrEqual(rt.maxBindingBytes);
    const ids = Uint32Array.from([0, vocab - 1, table.parts[1]!.rowStart, table.parts[1]!.rowStart - 1, 12345, vocab]);
    const out = poisoned(rt, 'f32', ids.length * dim);
    const rec = rt.recorder();
    embedding(rt, rec, { ids: rt.upload('u32', ids), out, rows: ids.length, dim, parts: table.parts });
    await rec.submit();
    const got = await rt.readFloats(out);
    const expected = new Float64Array(ids.length * dim);
    ids.forEach((id, r) => {
      if (id < vocab) for (let d = 0; d < dim; d++) expected[r * dim + d] = halfToFloat(bits[id * dim + d]!);
    });
    expect(relativeError(got, expected)).toBe(0);
    destroyEmbeddingTable(rt, table);
  });

  it('converts host data to the storage dtype (f32 data into an f16 table)', async () => {
    const rt = runtime();
    const rng = new Rng(99);
    const vocab = 50;
    const dim = 24;
    const values = rng.floats(vocab * dim, -3, 3);
    const table = prepareEmbeddingTable(rt, { data: values, vocab, dim, dtype: 'f16' });
    expect(table.parts[0]!.tensor.dtype).toBe('f16');
    const ids = Uint32Array.from({ length: 20 }, () => rng.int(vocab));
    const out = poisoned(rt, 'f32', ids.length * dim);
    const rec = rt.recorder();
    embedding(rt, rec, { ids: rt.upload('u32', ids), out, rows: ids.length, dim, parts: table.parts });
    await rec.submit();
    const got = await rt.readFloats(out);
    expect(relativeError(got, gatherRowsRef(values, vocab, dim, ids))).toBeLessThanOrEqual(TOLERANCE.f16);
    expect(relativeError(got, gatherRowsRef(roundTo('f16', values), vocab, dim, ids))).toBe(0);
  });

  it('rejects host data of the wrong size and parts that leave a gap', () => {
    const rt = runtime();
    let err: unknown;
    try {
      prepareEmbeddingTable(rt, { data: new Float32Array(10), vocab: 3, dim: 4, dtype: 'f32' });
    } catch (e) {
      err = e;
    }
    expect(isAutoGlmError(err, 'model_load_failed')).toBe(true);
    const part = { tensor: rt.tensor('f32', 8), rowStart: 0, rowCount: 2 };
    const rec = rt.recorder();
    expect(() =>
      embedding(rt, rec, {
        ids: rt.tensor('u32', 1),
        out: rt.tensor('f32', 4),
        rows: 1,
        dim: 4,
        parts: [part, { ...part, rowStart: 3 }],
      }),
    ).toThrow(RangeError);
  });
});
