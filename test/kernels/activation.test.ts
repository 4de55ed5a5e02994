import { describe, expect, it } from 'vitest';
import { activation, gatedActivation, type Activation } from '../../src/kernels/activation.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { ACTIVATIONS_REF, activationRef, gatedActivationRef } from '../reference/activation.js';

const runtime = useRuntime();
const KINDS: Activation[] = ['silu', 'gelu_tanh'];

describe('gatedActivation ([gate | up] -> act(gate) * up)', () => {
  const cases = [
    { rows: 1, inner: 1 },
    { rows: 7, inner: 7 },
    { rows: 33, inner: 33 },
    { rows: 129, inner: 129 },
    { rows: 3, inner: 4097 },
    { rows: 2, inner: 13696 },
    { rows: 300, inner: 8192 },
  ];
  for (const act of KINDS) {
    for (const c of cases) {
      it(`${act} rows=${c.rows} inner=${c.inner}`, async () => {
        const rt = runtime();
        const rng = new Rng(c.rows * 17 + c.inner + (act === 'silu' ? 0 : 1));
        const x = rng.floats(c.rows * 2 * c.inner, -6, 6);
        const out = poisoned(rt, 'f32', c.rows * c.inner);
        const rec = rt.recorder();
        gatedActivation(rt, rec, { x: rt.upload('f32', x), out, ...c, activation: act });
        await rec.submit();
        const got = await rt.readFloats(out);
        expect(relativeError(got, gatedActivationRef(x, c.rows, c.inner, ACTIVATIONS_REF[act]))).toBeLessThanOrEqual(TOLERANCE.f32);
      });
    }
  }
});

describe('activation (elementwise)', () => {
  for (const act of KINDS) {
    // 17e6: more than 65535 workgroups of 256, so the grid spills into y
    for (const n of [1, 7, 33, 129, 4097, ...(act === 'silu' ? [17_000_000] : [])]) {
      it(`${act} n=${n}`, async () => {
        const rt = runtime();
        const rng = new Rng(n * 3 + (act === 'silu' ? 0 : 1));
        const x = rng.floats(n, -8, 8);
        const out = poisoned(rt, 'f32', n);
        const rec = rt.recorder();
        activation(rt, rec, { x: rt.upload('f32', x), out, n, activation: act });
        await rec.submit();
        expect(relativeError(await rt.readFloats(out), activationRef(x, ACTIVATIONS_REF[act]))).toBeLessThanOrEqual(TOLERANCE.f32);
      });
    }

    it(`${act} stays finite and exact in the tails`, async () => {
      const rt = runtime();
      const x = Float32Array.from([-1e30, -500, -100, -30, -10, 0, 10, 30, 100, 500, 1e30]);
      const out = poisoned(rt, 'f32', x.length);
      const rec = rt.recorder();
      activation(rt, rec, { x: rt.upload('f32', x), out, n: x.length, activation: act });
      await rec.submit();
      const got = await rt.readFloats(out);
      const ref = activationRef(x, ACTIVATIONS_REF[act]);
      for (let i = 0; i < x.length; i++) {
        expect(Number.isFinite(got[i]!), `act(${x[i]}) = ${got[i]}`).toBe(true);
        expect(Math.abs(got[i]! - ref[i]!)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref[i]!)));
      }
    });
  }
});
