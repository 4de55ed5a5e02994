import { describe, expect, it } from 'vitest';
import { gatherRows } from '../../src/kernels/gather-rows.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { gatherRowsRef } from '../reference/embedding.js';

const runtime = useRuntime();

describe('gatherRows', () => {
  const cases = [
    { srcRows: 1, dim: 1, count: 1 },
    { srcRows: 7, dim: 7, count: 7 },
    { srcRows: 33, dim: 129, count: 5 },
    { srcRows: 129, dim: 33, count: 129 },
    { srcRows: 4097, dim: 64, count: 33 },
    { srcRows: 3, dim: 4097, count: 7 },
  ];
  for (const c of cases) {
    it(`srcRows=${c.srcRows} dim=${c.dim} count=${c.count}`, async () => {
      const rt = runtime();
      const rng = new Rng(c.srcRows * 101 + c.dim * 7 + c.count);
      const src = rng.floats(c.srcRows * c.dim, -5, 5);
      // repeated, unordered indices, and one past the end (a zero row) where there is room
      const indices = Uint32Array.from({ length: c.count }, () => rng.int(c.srcRows));
      if (c.count > 2) indices[1] = c.srcRows;
      const out = poisoned(rt, 'f32', c.count * c.dim);
      const rec = rt.recorder();
      gatherRows(rt, rec, { src: rt.upload('f32', src), indices: rt.upload('u32', indices), out, ...c });
      await rec.submit();
      const got = await rt.readFloats(out);
      expect(relativeError(got, gatherRowsRef(src, c.srcRows, c.dim, indices))).toBeLessThanOrEqual(TOLERANCE.f32);
    });
  }
});
