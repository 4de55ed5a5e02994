import { describe, expect, it } from 'vitest';
import { addRmsNorm, rmsNorm } from '../../src/kernels/rmsnorm.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { addRmsNormRef, rmsNormRef } from '../reference/norms.js';

const runtime = useRuntime();

// both forms, each with the adapter's default reduction (a subgroupAdd on CPU adapters) and
// with the workgroup-memory tree (the GPU default)
const REDUCTIONS = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
] as const;

describe('rmsNorm', () => {
  const cases = [
    { rows: 1, dim: 1 },
    { rows: 7, dim: 7 },
    { rows: 33, dim: 33 },
    { rows: 129, dim: 129 },
    { rows: 3, dim: 4097 },
    { rows: 2, dim: 8192 },
    { rows: 5, dim: 12288 },
    { rows: 4097, dim: 64 },
  ];
  for (const [onePlus, workgroupReduction] of REDUCTIONS) {
    for (const c of cases) {
      it(`rows=${c.rows} dim=${c.dim}${onePlus ? ' (1 + w)' : ''}${workgroupReduction ? ', workgroup reduction' : ''}`, async () => {
        const rt = runtime();
        const rng = new Rng(c.rows * 7919 + c.dim + (onePlus ? 1 : 0));
        // a scale per test, so that eps is neither negligible nor dominant by accident
        const x = rng.floats(c.rows * c.dim, -3, 3);
        const w = rng.floats(c.dim, -2, 2);
        const eps = 1e-6;
        const out = poisoned(rt, 'f32', x.length);
        const rec = rt.recorder();
        rmsNorm(rt, rec, {
          x: rt.upload('f32', x),
          weight: rt.upload('f32', w),
          out,
          rows: c.rows,
          dim: c.dim,
          eps,
          onePlus,
          workgroupReduction,
        });
        await rec.submit();
        const got = await rt.readFloats(out);
        expect(relativeError(got, rmsNormRef(x, w, { ...c, eps, onePlus }))).toBeLessThanOrEqual(TOLERANCE.f32);
      });
    }
  }

  it('eps matters when the mean square is comparable to it', async () => {
    const rt = runtime();
    const rng = new Rng(5);
    const rows = 4;
    const dim = 96;
    const x = rng.floats(rows * dim, -1e-3, 1e-3);
    const w = rng.floats(dim, 0.5, 1.5);
    const eps = 1e-6;
    const out = poisoned(rt, 'f32', x.length);
    const rec = rt.recorder();
    rmsNorm(rt, rec, { x: rt.upload('f32', x), weight: rt.upload('f32', w), out, rows, dim, eps });
    await rec.submit();
    const got = await rt.readFloats(out);
    expect(relativeError(got, rmsNormRef(x, w, { rows, dim, eps }))).toBeLessThanOrEqual(TOLERANCE.f32);
    // the same data normalised with eps = 0 differs clearly: eps really enters the kernel
    expect(relativeError(got, rmsNormRef(x, w, { rows, dim, eps: 0 }))).toBeGreaterThan(1e-2);
  });

  // Qwen3's q/k norm: per head, in place, here inside a fused QKV row
  const perHead = [
    { tokens: 1, heads: 1, headDim: 128, before: 0, after: 0 },
    { tokens: 7, heads: 16, headDim: 128, before: 0, after: 0 },
    { tokens: 33, heads: 4, headDim: 64, before: 256, after: 512 },
    { tokens: 129, heads: 2, headDim: 80, before: 160, after: 3 },
  ];
  for (const c of perHead) {
    it(`per head in place: tokens=${c.tokens} heads=${c.heads} headDim=${c.headDim} (row stride +${c.before + c.after})`, async () => {
      const rt = runtime();
      const rng = new Rng(c.tokens * 31 + c.heads * 7 + c.headDim);
      const rowStride = c.before + c.heads * c.headDim + c.after;
      const x = rng.floats(c.tokens * rowStride, -2, 2);
      const w = rng.floats(c.headDim, -1, 1);
      const layout = { rows: c.tokens, dim: c.headDim, segments: c.heads, rowStride, offset: c.before, eps: 1e-6, onePlus: false };
      const t = rt.upload('f32', x);
      const rec = rt.recorder();
      rmsNorm(rt, rec, { x: t, weight: rt.upload('f32', w), ...layout });
      await rec.submit();
      const got = await rt.readFloats(t);
      const ref = rmsNormRef(x, w, layout);
      expect(relativeError(got, ref)).toBeLessThanOrEqual(TOLERANCE.f32);
      // values outside the normalised heads are untouched, bit for bit
      for (let r = 0; r < c.tokens; r++) {
        for (let i = 0; i < rowStride; i++) {
          if (i >= c.before && i < c.before + c.heads * c.headDim) continue;
          if (got[r * rowStride + i] !== x[r * rowStride + i]) throw new Error(`row ${r} element ${i} changed`);
        }
      }
    });
  }

  for (const [onePlus, workgroupReduction] of REDUCTIONS) {
    it(`accumulate: out += the norm (a post-norm into the residual stream)${onePlus ? ' (1 + w)' : ''}${workgroupReduction ? ', workgroup reduction' : ''}`, async () => {
      const rt = runtime();
      const rng = new Rng(31 + (onePlus ? 1 : 0) + (workgroupReduction ? 2 : 0));
      const rows = 9;
      const dim = 768;
      const x = rng.floats(rows * dim, -3, 3);
      const w = rng.floats(dim, -2, 2);
      const before = rng.floats(rows * dim, -5, 5);
      const out = rt.upload('f32', before);
      const rec = rt.recorder();
      rmsNorm(rt, rec, {
        x: rt.upload('f32', x),
        weight: rt.upload('f32', w),
        out,
        accumulate: true,
        rows,
        dim,
        eps: 1e-6,
        onePlus,
        workgroupReduction,
      });
      await rec.submit();
      const norm = rmsNormRef(x, w, { rows, dim, eps: 1e-6, onePlus });
      const want = before.map((b, i) => b + norm[i]!);
      expect(relativeError(await rt.readFloats(out), want)).toBeLessThanOrEqual(TOLERANCE.f32);
    });
  }

  it('accumulate needs an output apart from x', () => {
    const rt = runtime();
    const x = rt.tensor('f32', 32);
    const rec = rt.recorder();
    expect(() => rmsNorm(rt, rec, { x, weight: rt.tensor('f32', 32), accumulate: true, rows: 1, dim: 32, eps: 1e-6 })).toThrow(
      /accumulate/,
    );
    expect(() => rmsNorm(rt, rec, { x, out: x, weight: rt.tensor('f32', 32), accumulate: true, rows: 1, dim: 32, eps: 1e-6 })).toThrow(
      /accumulate/,
    );
  });

  it('rejects an output that overlaps the input without being it', () => {
    const rt = runtime();
    const buf = rt.tensor('f32', 64);
    const shifted = { ...buf, byteOffset: 16, length: 32 };
    const rec = rt.recorder();
    expect(() =>
      rmsNorm(rt, rec, { x: { ...buf, length: 32 }, out: shifted, weight: rt.tensor('f32', 32), rows: 1, dim: 32, eps: 1e-6 }),
    ).toThrow(RangeError);
    expect(() => rmsNorm(rt, rec, { x: buf, weight: rt.tensor('f32', 8), rows: 1, dim: 0, eps: 1e-6 })).toThrow(RangeError);
  });
});

describe('addRmsNorm', () => {
  const cases = [
    { rows: 1, dim: 1 },
    { rows: 7, dim: 33 },
    { rows: 129, dim: 129 },
    { rows: 2, dim: 4097 },
    { rows: 33, dim: 2048 },
  ];
  for (const [onePlus, workgroupReduction] of REDUCTIONS) {
    for (const c of cases) {
      it(`rows=${c.rows} dim=${c.dim}${onePlus ? ' (1 + w)' : ''}${workgroupReduction ? ', workgroup reduction' : ''}`, async () => {
        const rt = runtime();
        const rng = new Rng(c.rows * 131 + c.dim * 3 + (onePlus ? 1 : 0));
        const n = c.rows * c.dim;
        const x = rng.floats(n, -1, 1);
        const res = rng.floats(n, -4, 4);
        const w = rng.floats(c.dim, -1, 1);
        const eps = 1e-5;
        const residual = rt.upload('f32', res);
        const out = poisoned(rt, 'f32', n);
        const rec = rt.recorder();
        addRmsNorm(rt, rec, { x: rt.upload('f32', x), residual, weight: rt.upload('f32', w), out, ...c, eps, onePlus, workgroupReduction });
        await rec.submit();
        const ref = addRmsNormRef(x, res, w, { ...c, eps, onePlus });
        expect(relativeError(await rt.readFloats(residual), ref.residual)).toBeLessThanOrEqual(TOLERANCE.f32);
        expect(relativeError(await rt.readFloats(out), ref.out)).toBeLessThanOrEqual(TOLERANCE.f32);
      });
    }
  }
});
