import { describe, expect, it } from 'vitest';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import { sigmoidGatedAdd, sigmoidGatedAddUsesSubgroups, type SigmoidGatedAddOptions } from '../../src/kernels/sigmoid-gated-add.js';
import { hasSubgroupsOf } from '../../src/kernels/subgroups.js';
import { sliceTensor } from '../../src/kernels/tensor.js';
import { relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { Rng } from '../helpers/random.js';
import { sigmoid, sigmoidGatedAddRef } from '../reference/sigmoid-gated-add.js';

interface Shape {
  rows: number;
  K: number;
  N: number;
}

interface Inputs {
  x: Float32Array;
  gate: Float32Array;
  y: Float32Array;
  /** What out holds before the add (the residual stream). */
  base: Float32Array;
}

/** Elements of padding before (and after) each tensor in its own buffer. */
interface Padding {
  x: number;
  gate: number;
  y: number;
  out: number;
  /** After every tensor. */
  tail: number;
}

/** What out's padding holds: the kernel must leave it as it is. */
const OUT_SENTINEL = 12345.5;

/**
 * Random inputs with the gate weights scaled by 1 / sqrt(K), so that the dots stay near 0
 * (about ±0.7), where the sigmoid's slope is largest and a wrong dot shows.
 */
function randomInputs(s: Shape): Inputs {
  const rng = new Rng(s.rows * 7919 + s.K * 31 + s.N * 7);
  const scale = 2 / Math.sqrt(s.K);
  return {
    x: rng.floats(s.rows * s.K),
    gate: rng.floats(s.K, -scale, scale),
    y: rng.floats(s.rows * s.N),
    base: rng.floats(s.rows * s.N, -2, 2),
  };
}

/** `values` with `before` and `after` elements of `fill` around it. */
function padded(values: Float32Array, before: number, after: number, fill: number): Float32Array {
  const out = new Float32Array(before + values.length + after).fill(fill);
  out.set(values, before);
  return out;
}

/**
 * Runs the kernel on tensors each in its own buffer, at `pad` elements into it, with NaN
 * around the inputs (a read outside a view poisons the result) and OUT_SENTINEL around
 * out, which must stay untouched. Returns out's view.
 */
async function run(
  rt: KernelRuntime,
  s: Shape,
  inputs: Inputs,
  pad: Padding = { x: 0, gate: 0, y: 0, out: 0, tail: 0 },
): Promise<Float32Array> {
  const { rows, K, N } = s;
  const xt = rt.upload('f32', padded(inputs.x, pad.x, pad.tail, NaN));
  const gt = rt.upload('f32', padded(inputs.gate, pad.gate, pad.tail, NaN));
  const yt = rt.upload('f32', padded(inputs.y, pad.y, pad.tail, NaN));
  const ot = rt.upload('f32', padded(inputs.base, pad.out, pad.tail, OUT_SENTINEL));
  try {
    const rec = rt.recorder();
    sigmoidGatedAdd(rt, rec, {
      x: sliceTensor(xt, pad.x, rows * K),
      gate: sliceTensor(gt, pad.gate, K),
      y: sliceTensor(yt, pad.y, rows * N),
      out: sliceTensor(ot, pad.out, rows * N),
      rows,
      K,
      N,
    });
    expect(rec.dispatchCount).toBe(1);
    await rec.submit();
    const all = await rt.readFloats(ot);
    const outside = [...all.subarray(0, pad.out), ...all.subarray(pad.out + rows * N)];
    expect(
      outside.every((v) => v === OUT_SENTINEL),
      "out's padding is untouched",
    ).toBe(true);
    return all.slice(pad.out, pad.out + rows * N);
  } finally {
    for (const t of [xt, gt, yt, ot]) rt.destroyBuffer(t.buffer);
  }
}

/**
 * The whole output, and the added part alone (out - base against the reference's gate * y,
 * which base's magnitude does not dilute), within f32 tolerance of the float64 reference.
 */
function expectMatchesReference(got: Float32Array, s: Shape, inputs: Inputs): void {
  const want = sigmoidGatedAddRef(inputs.x, inputs.gate, inputs.y, inputs.base, s.rows, s.K, s.N);
  expect(relativeError(got, want)).toBeLessThanOrEqual(TOLERANCE.f32);
  const gotAdded = Float64Array.from(got, (v, i) => v - inputs.base[i]!);
  const wantAdded = Float64Array.from(want, (v, i) => v - inputs.base[i]!);
  expect(relativeError(gotAdded, wantAdded)).toBeLessThanOrEqual(TOLERANCE.f32);
}

describe('sigmoidGatedAddRef (the float64 reference)', () => {
  it('adds sigmoid(x . gate) * y', () => {
    // row 0: dot 0 (gate 1/2); row 1: dot ln 3 (gate 3/4); row 2: dot -ln 3 (gate 1/4)
    const ln3 = Math.log(3);
    const x = [1, -1, ln3, 0, 0, -ln3];
    const gate = [1, 1];
    const y = [2, 4, 8, -4, 4, 8];
    const base = [1, 1, 1, 1, 1, 1];
    const got = sigmoidGatedAddRef(x, gate, y, base, 3, 2, 2);
    const want = [2, 3, 7, -2, 2, 3];
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 12));
  });

  it('saturates to exactly 0 and 1 without NaN', () => {
    for (const z of [800, 1e300, Infinity]) {
      expect(sigmoid(z)).toBe(1);
      expect(sigmoid(-z)).toBe(0);
    }
  });
});

// 'cpu': one 8-lane subgroup per row where the adapter has subgroups of 8+ lanes (lavapipe
// does); 'gpu': 256 invocations per row with a workgroup-memory tree reduction
describe.each(['cpu', 'gpu'] as const)('sigmoidGatedAdd (out += sigmoid(x . gate) * y), %s kernel profile', (kernelProfile) => {
  const runtime = useRuntime({ kernelProfile });

  it('runs the variant of its profile', () => {
    const rt = runtime();
    expect(sigmoidGatedAddUsesSubgroups(rt)).toBe(kernelProfile === 'cpu' && hasSubgroupsOf(rt, 8));
  });

  const shapes: Shape[] = [];
  for (const rows of [1, 3, 17]) for (const K of [4, 60, 256, 2048, 2050]) for (const N of [1, 7, 64, 2048]) shapes.push({ rows, K, N });
  // more rows than one grid dimension holds (65535): the grid spills into y
  shapes.push({ rows: 70_000, K: 60, N: 1 }, { rows: 70_000, K: 4, N: 7 });
  // a spilled grid with workgroups past the last row (32769 x 2 for 65537 rows)
  shapes.push({ rows: 65_537, K: 5, N: 3 });

  for (const s of shapes) {
    it(`rows=${s.rows} K=${s.K} N=${s.N}`, async () => {
      const inputs = randomInputs(s);
      expectMatchesReference(await run(runtime(), s, inputs), s, inputs);
    });
  }

  it('gates of exactly 0 and 1, without NaN, for large |x . gate|', async () => {
    const dots = [200, -200, 1000, -1000, 90, -90, 30, -30, 0, Infinity, -Infinity];
    for (const K of [60, 2050]) {
      const s = { rows: dots.length, K, N: 64 };
      const inputs = randomInputs(s);
      let norm2 = 0;
      for (const g of inputs.gate) norm2 += g * g;
      dots.forEach((dot, r) => {
        for (let k = 0; k < K; k++) {
          const g = inputs.gate[k]!;
          // ±inf: every product far past f32's range, all of one sign, so the f32 dot is ±inf
          inputs.x[r * K + k] = Number.isFinite(dot) ? (g * dot) / norm2 : Math.sign(dot) * Math.sign(g) * 3e38;
        }
      });
      const got = await run(runtime(), s, inputs);
      expectMatchesReference(got, s, inputs);
      dots.forEach((dot, r) => {
        if (Math.abs(dot) < 200) return;
        for (let n = 0; n < s.N; n++) {
          const i = r * s.N + n;
          // a gate of exactly 1 adds y (one f32 rounding), of exactly 0 leaves base as it is
          const want = dot > 0 ? Math.fround(inputs.base[i]! + inputs.y[i]!) : inputs.base[i]!;
          expect(got[i], `K=${K} dot=${dot} n=${n}`).toBe(want);
        }
      });
    }
  });

  it('tensor views at offsets, padding untouched', async () => {
    for (const s of [
      { rows: 3, K: 60, N: 7 },
      { rows: 17, K: 2050, N: 64 },
    ]) {
      const inputs = randomInputs(s);
      // offsets that are not multiples of the storage offset alignment (or of 4 elements)
      const pad = { x: 5, gate: 67, y: 3, out: 1, tail: 9 };
      expectMatchesReference(await run(runtime(), s, inputs, pad), s, inputs);
    }
  });

  it('inputs packed in one buffer (views overlapping, at odd offsets)', async () => {
    const rt = runtime();
    const s = { rows: 5, K: 33, N: 9 };
    const { rows, K, N } = s;
    const inputs = randomInputs(s);
    // x at 1, gate right after it, y 2 elements later
    const xAt = 1;
    const gateAt = xAt + rows * K;
    const yAt = gateAt + K + 2;
    const packed = new Float32Array(yAt + rows * N + 3).fill(NaN);
    packed.set(inputs.x, xAt);
    packed.set(inputs.gate, gateAt);
    packed.set(inputs.y, yAt);
    const t = rt.upload('f32', packed);
    const outPad = 7;
    const out = rt.upload('f32', padded(inputs.base, outPad, 2, OUT_SENTINEL));
    try {
      const rec = rt.recorder();
      sigmoidGatedAdd(rt, rec, {
        // x's view runs on into gate's: read-only views of one buffer may overlap
        x: sliceTensor(t, xAt, rows * K + 1),
        gate: sliceTensor(t, gateAt, K),
        y: sliceTensor(t, yAt, rows * N),
        out: sliceTensor(out, outPad, rows * N),
        ...s,
      });
      await rec.submit();
      const all = await rt.readFloats(out);
      expect([...all.subarray(0, outPad), ...all.subarray(outPad + rows * N)].every((v) => v === OUT_SENTINEL)).toBe(true);
      expectMatchesReference(all.slice(outPad, outPad + rows * N), s, inputs);
    } finally {
      rt.destroyBuffer(t.buffer);
      rt.destroyBuffer(out.buffer);
    }
  });

  it('refuses bad arguments before recording', async () => {
    const rt = runtime();
    const rec = rt.recorder();
    const base: SigmoidGatedAddOptions = {
      x: rt.tensor('f32', 2 * 5),
      gate: rt.tensor('f32', 5),
      y: rt.tensor('f32', 2 * 3),
      out: rt.tensor('f32', 2 * 3),
      rows: 2,
      K: 5,
      N: 3,
    };
    const call = (o: Partial<SigmoidGatedAddOptions>) => () => sigmoidGatedAdd(rt, rec, { ...base, ...o });
    expect(call({})).not.toThrow();
    const recorded = rec.dispatchCount;
    for (const bad of [0, -1, 2.5, NaN, Infinity]) {
      for (const key of ['rows', 'K', 'N'] as const) expect(call({ [key]: bad }), `${key} ${bad}`).toThrow(RangeError);
    }
    for (const key of ['x', 'gate', 'y', 'out'] as const) {
      const length = base[key].length;
      expect(call({ [key]: rt.tensor('f16', length) }), `${key} f16`).toThrow(TypeError);
      expect(call({ [key]: rt.tensor('u32', length) }), `${key} u32`).toThrow(TypeError);
      expect(call({ [key]: rt.tensor('f32', length - 1) }), `${key} short`).toThrow(
        new RegExp(`${key} has ${length - 1} elements, needs ${length}`),
      );
    }
    const shared = rt.tensor('f32', 1024);
    for (const key of ['x', 'gate', 'y'] as const) {
      const length = base[key].length;
      // overlapping views
      expect(call({ [key]: sliceTensor(shared, 0, length), out: sliceTensor(shared, length - 1, 6) }), `${key} overlaps out`).toThrow(
        /overlap/,
      );
      expect(call({ out: sliceTensor(shared, 0, 6), [key]: sliceTensor(shared, 5, length) }), `out overlaps ${key}`).toThrow(/overlap/);
      // apart, beside out or far from it: WebGPU refuses one buffer bound read-only and writable in one dispatch
      for (const outAt of [length, 512])
        expect(call({ [key]: sliceTensor(shared, 0, length), out: sliceTensor(shared, outAt, 6) }), `${key}, out at ${outAt}`).toThrow(
          new RegExp(`out and ${key} share a buffer`),
        );
    }
    // the inputs may share a buffer with each other, even overlap
    expect(call({ x: sliceTensor(shared, 0, 10), gate: sliceTensor(shared, 3, 5), y: sliceTensor(shared, 1, 6) })).not.toThrow();
    expect(rec.dispatchCount).toBe(recorded + 1);
    await rec.submit();
  });
});
