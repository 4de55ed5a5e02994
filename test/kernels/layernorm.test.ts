import { describe, expect, it } from 'vitest';
import { layerNorm } from '../../src/kernels/layernorm.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { layerNormRef } from '../reference/norms.js';

const runtime = useRuntime();

describe('layerNorm', () => {
  const cases = [
    { rows: 1, dim: 1 },
    { rows: 7, dim: 7 },
    { rows: 33, dim: 33 },
    { rows: 129, dim: 129 },
    { rows: 3, dim: 4097 },
    { rows: 2, dim: 8192 },
    { rows: 4097, dim: 64 },
  ];
  // each case with the adapter's default reduction (subgroups on CPU adapters) and with
  // the workgroup-memory one
  for (const [inPlace, workgroupReduction] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    for (const c of cases) {
      it(`rows=${c.rows} dim=${c.dim}${inPlace ? ' in place' : ''}${workgroupReduction ? ', workgroup reduction' : ''}`, async () => {
        const rt = runtime();
        const rng = new Rng(c.rows * 613 + c.dim + (inPlace ? 1 : 0));
        // an offset mean: a one-pass E[x^2] - E[x]^2 would lose digits here
        const x = rng.floats(c.rows * c.dim, 9, 11);
        const w = rng.floats(c.dim, -2, 2);
        const b = rng.floats(c.dim, -1, 1);
        const eps = 1e-5;
        const xt = rt.upload('f32', x);
        const out = inPlace ? xt : poisoned(rt, 'f32', x.length);
        const rec = rt.recorder();
        layerNorm(rt, rec, { x: xt, weight: rt.upload('f32', w), bias: rt.upload('f32', b), out, ...c, eps, workgroupReduction });
        await rec.submit();
        const got = await rt.readFloats(out);
        expect(relativeError(got, layerNormRef(x, w, b, { ...c, eps }))).toBeLessThanOrEqual(TOLERANCE.f32);
      });
    }
  }
});
