import { describe, expect, it } from 'vitest';
import { add } from '../../src/kernels/add.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, roundTo, TOLERANCE, uploadFloats, useRuntime } from '../helpers/gpu.js';
import { addRef } from '../reference/elementwise.js';

const runtime = useRuntime();

describe('add', () => {
  const sizes = [1, 7, 33, 129, 4097, 70000];
  for (const dtype of ['f32', 'f16'] as const) {
    for (const n of sizes) {
      it(`${dtype} n=${n}`, async ({ skip }) => {
        const rt = runtime();
        if (dtype === 'f16' && !rt.hasF16) return skip('the adapter has no shader-f16');
        const rng = new Rng(n * 31 + (dtype === 'f16' ? 1 : 0));
        const a = roundTo(dtype, rng.floats(n));
        const b = roundTo(dtype, rng.floats(n));
        const out = poisoned(rt, dtype, n);
        const rec = rt.recorder();
        add(rt, rec, uploadFloats(rt, dtype, a), uploadFloats(rt, dtype, b), out);
        await rec.submit();
        const got = await rt.readFloats(out);
        expect(relativeError(got, addRef(a, b))).toBeLessThanOrEqual(TOLERANCE[dtype]);
      });
    }
  }
});
