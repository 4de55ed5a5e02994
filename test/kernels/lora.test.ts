import { describe, expect, it } from 'vitest';
import { LORA_NO_ADAPTER, loraExpand, loraShrink } from '../../src/kernels/lora.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import { sliceTensor, type GpuTensor } from '../../src/kernels/tensor.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { loraExpandRef, loraShrinkRef } from '../reference/lora.js';

const runtime = useRuntime();

/** Elements past the kernel's output, checked unchanged afterwards (a write past the end). */
const GUARD = 8;

/**
 * Each row's slot: mostly adapters (repeated, unordered), and where there is room a row
 * with no adapter, one with slot = slots and one far past it (neither may be read).
 */
function rowSlotsFor(rng: Rng, rows: number, slots: number): Uint32Array {
  const s = Uint32Array.from({ length: rows }, () => rng.int(slots));
  if (rows >= 3) s[1] = LORA_NO_ADAPTER;
  if (rows >= 4) s[rows - 1] = slots;
  if (rows >= 7) s[4] = slots + 5;
  return s;
}

/** `values` uploaded `before` elements into a buffer of their own, with GUARD more after them. */
function placed(rt: KernelRuntime, dtype: 'f32' | 'u32', values: Float32Array | Uint32Array, before: number): GpuTensor {
  const whole = rt.tensor(dtype, before + values.length + GUARD);
  rt.write(whole, values, before);
  return { buffer: whole.buffer, byteOffset: before * 4, length: values.length, dtype };
}

/**
 * Adapter weights with one more slot's worth of nonzero values after them in the same
 * buffer, so that a kernel reading slot = slots would see data, not the zeros an adapter's
 * robust access returns past a buffer's end.
 */
function weights(rt: KernelRuntime, rng: Rng, values: Float32Array, perSlot: number): GpuTensor {
  const whole = rt.upload('f32', Float32Array.from([...values, ...rng.floats(perSlot, 1, 2)]));
  return { ...whole, length: values.length };
}

async function readAround(rt: KernelRuntime, t: GpuTensor): Promise<{ values: Float32Array; tailBits: Uint32Array }> {
  const whole = { ...t, length: t.length + GUARD };
  const all = (await rt.readFloats(whole)).slice();
  return { values: all.slice(0, t.length), tailBits: new Uint32Array(all.buffer, t.length * 4, GUARD).slice() };
}

type Norm = 'none' | 'plain' | 'onePlus';
const NORMS: readonly Norm[] = ['none', 'plain', 'onePlus'];

describe('loraShrink', () => {
  // K 1, 7, 33, 4097 take the scalar loads; 64, 768 and 4096 the vec4 ones. R is parts * rank.
  const cases = [
    { rows: 1, K: 1, R: 1, slots: 1 },
    { rows: 7, K: 7, R: 8, slots: 2 },
    { rows: 33, K: 33, R: 3 * 16, slots: 3 },
    { rows: 129, K: 64, R: 2 * 8, slots: 3 },
    { rows: 7, K: 4097, R: 3 * 64, slots: 2 },
    { rows: 33, K: 768, R: 3 * 16, slots: 3 },
    { rows: 1, K: 4096, R: 64, slots: 1 },
    { rows: 129, K: 33, R: 2 * 1, slots: 2 },
    // more than 65535 workgroups: the grid spills into y
    { rows: 4097, K: 8, R: 64, slots: 3 },
  ];
  for (const workgroupReduction of [false, true]) {
    for (const c of cases) {
      for (const norm of NORMS) {
        const name = `rows=${c.rows} K=${c.K} R=${c.R} slots=${c.slots} norm=${norm}${workgroupReduction ? ', workgroup reduction' : ''}`;
        it(name, async () => {
          const rt = runtime();
          const rng = new Rng(c.rows * 7919 + c.K * 31 + c.R * 7 + c.slots + NORMS.indexOf(norm) * 104729);
          const x = rng.floats(c.rows * c.K, -3, 3);
          const a = rng.floats(c.slots * c.R * c.K, -1, 1);
          const w = rng.floats(c.K, -2, 2);
          const slots = rowSlotsFor(rng, c.rows, c.slots);
          const normX = norm === 'none' ? undefined : { eps: 1e-5, onePlus: norm === 'onePlus' };
          const t = poisoned(rt, 'f32', c.rows * c.R + GUARD);
          const out = { ...t, length: c.rows * c.R };
          const rec = rt.recorder();
          loraShrink(rt, rec, {
            x: rt.upload('f32', x),
            a: weights(rt, rng, a, c.R * c.K),
            rowSlots: rt.upload('u32', slots),
            t: out,
            ...c,
            normX: normX && { weight: rt.upload('f32', w), ...normX },
            workgroupReduction,
          });
          await rec.submit();
          const got = await readAround(rt, out);
          const ref = loraShrinkRef(x, a, slots, { ...c, normX: normX && { weight: w, ...normX } });
          expect(relativeError(got.values, ref)).toBeLessThanOrEqual(TOLERANCE.f32);
          for (let row = 0; row < c.rows; row++) {
            if (slots[row]! < c.slots) continue;
            for (let j = 0; j < c.R; j++) expect(got.values[row * c.R + j]).toBe(0);
          }
          for (const bits of got.tailBits) expect(bits).toBe(0x7fc00000);
        });
      }
    }
  }

  it('takes slices at offsets that are and are not multiples of 4 elements', async () => {
    const rt = runtime();
    const rng = new Rng(11);
    const c = { rows: 9, K: 96, R: 24, slots: 2 };
    const x = rng.floats(c.rows * c.K, -3, 3);
    const a = rng.floats(c.slots * c.R * c.K, -1, 1);
    const w = rng.floats(c.K, -1, 1);
    const slots = rowSlotsFor(rng, c.rows, c.slots);
    const ref = loraShrinkRef(x, a, slots, { ...c, normX: { weight: w, eps: 1e-6, onePlus: true } });
    for (const before of [4, 3, 67]) {
      const t = placed(rt, 'f32', new Float32Array(c.rows * c.R).fill(NaN), before + 1);
      const rec = rt.recorder();
      loraShrink(rt, rec, {
        x: placed(rt, 'f32', x, before),
        a: placed(rt, 'f32', a, 2 * before),
        rowSlots: placed(rt, 'u32', slots, before + 2),
        t,
        ...c,
        normX: { weight: placed(rt, 'f32', w, before), eps: 1e-6, onePlus: true },
      });
      await rec.submit();
      expect(relativeError(await rt.readFloats(t), ref)).toBeLessThanOrEqual(TOLERANCE.f32);
    }
  });

  it('applies eps when the mean square is comparable to it', async () => {
    const rt = runtime();
    const rng = new Rng(13);
    const c = { rows: 5, K: 96, R: 8, slots: 1 };
    const x = rng.floats(c.rows * c.K, -1e-3, 1e-3);
    const a = rng.floats(c.R * c.K, -1, 1);
    const w = rng.floats(c.K, 0.5, 1.5);
    const slots = new Uint32Array(c.rows);
    const t = poisoned(rt, 'f32', c.rows * c.R);
    const rec = rt.recorder();
    const eps = 1e-6;
    const rowSlots = rt.upload('u32', slots);
    loraShrink(rt, rec, {
      x: rt.upload('f32', x),
      a: rt.upload('f32', a),
      rowSlots,
      t,
      ...c,
      normX: { weight: rt.upload('f32', w), eps, onePlus: false },
    });
    await rec.submit();
    const got = await rt.readFloats(t);
    expect(relativeError(got, loraShrinkRef(x, a, slots, { ...c, normX: { weight: w, eps, onePlus: false } }))).toBeLessThanOrEqual(
      TOLERANCE.f32,
    );
    expect(relativeError(got, loraShrinkRef(x, a, slots, { ...c, normX: { weight: w, eps: 0, onePlus: false } }))).toBeGreaterThan(1e-2);
  });

  it('rejects bad arguments with typed errors', () => {
    const rt = runtime();
    const rec = rt.recorder();
    const base = {
      x: rt.tensor('f32', 2 * 8),
      a: rt.tensor('f32', 3 * 4 * 8),
      rowSlots: rt.tensor('u32', 2),
      t: rt.tensor('f32', 2 * 4),
      rows: 2,
      K: 8,
      R: 4,
      slots: 3,
    };
    expect(() => loraShrink(rt, rec, { ...base, rows: 0 })).toThrow(RangeError);
    expect(() => loraShrink(rt, rec, { ...base, R: 1.5 })).toThrow(RangeError);
    expect(() => loraShrink(rt, rec, { ...base, slots: 4 })).toThrow(/a has 96 elements, needs 128/);
    expect(() => loraShrink(rt, rec, { ...base, K: 9 })).toThrow(RangeError);
    expect(() => loraShrink(rt, rec, { ...base, t: rt.tensor('f32', 7) })).toThrow(/t has 7/);
    expect(() => loraShrink(rt, rec, { ...base, rowSlots: rt.tensor('u32', 1) })).toThrow(/rowSlots has 1/);
    expect(() => loraShrink(rt, rec, { ...base, rowSlots: rt.tensor('f32', 2) })).toThrow(TypeError);
    expect(() => loraShrink(rt, rec, { ...base, x: rt.tensor('f16', 16) })).toThrow(TypeError);
    expect(() => loraShrink(rt, rec, { ...base, t: { ...base.x, length: 8 } })).toThrow(/overlap/);
    // apart, 4 KiB away, but in one buffer: WebGPU refuses it written and read in one dispatch
    const wide = rt.tensor('f32', 2048);
    expect(() => loraShrink(rt, rec, { ...base, x: sliceTensor(wide, 0, 16), t: sliceTensor(wide, 1024, 8) })).toThrow(
      /t and x share a buffer/,
    );
    const norm = (weight: GpuTensor, eps = 1e-6) => ({ weight, eps, onePlus: false });
    expect(() => loraShrink(rt, rec, { ...base, normX: norm(rt.tensor('f32', 7)) })).toThrow(/normX.weight has 7/);
    expect(() => loraShrink(rt, rec, { ...base, normX: norm(rt.tensor('u32', 8)) })).toThrow(TypeError);
    expect(() => loraShrink(rt, rec, { ...base, normX: norm(rt.tensor('f32', 8), NaN) })).toThrow(/eps/);
    expect(() => loraShrink(rt, rec, { ...base, normX: norm(rt.tensor('f32', 8), -1) })).toThrow(/eps/);
    expect(rec.dispatchCount).toBe(0);
  });
});

describe('loraExpand', () => {
  // N and starts multiples of 4 take groups of four columns (2304, 1024, 12, 8), the rest one
  // column per invocation; rank a multiple of 4 takes vec4 loads of t and b
  const cases = [
    { rows: 1, N: 1, rank: 1, slots: 1, segmentStarts: [] },
    { rows: 7, N: 7, rank: 8, slots: 2, segmentStarts: [3] },
    { rows: 7, N: 7, rank: 1, slots: 3, segmentStarts: [2, 5] },
    { rows: 33, N: 33, rank: 16, slots: 3, segmentStarts: [1, 32] },
    { rows: 129, N: 4097, rank: 8, slots: 2, segmentStarts: [2049, 3073] },
    { rows: 33, N: 2304, rank: 16, slots: 3, segmentStarts: [768, 1536] },
    { rows: 7, N: 1024, rank: 64, slots: 2, segmentStarts: [512] },
    { rows: 129, N: 33, rank: 7, slots: 3, segmentStarts: [] },
    { rows: 1, N: 4097, rank: 16, slots: 1, segmentStarts: [4096] },
    // groups of four columns with scalar t and b loads
    { rows: 7, N: 12, rank: 3, slots: 2, segmentStarts: [4, 8] },
    // more than 65535 rows: the grid spills into z
    { rows: 65537, N: 8, rank: 4, slots: 2, segmentStarts: [4] },
  ];
  for (const c of cases) {
    const name = `rows=${c.rows} N=${c.N} rank=${c.rank} slots=${c.slots} segmentStarts=[${c.segmentStarts.join(', ')}]`;
    it(name, async () => {
      const rt = runtime();
      const rng = new Rng(c.rows * 7919 + c.N * 31 + c.rank * 7 + c.slots + c.segmentStarts.length * 104729);
      const R = (c.segmentStarts.length + 1) * c.rank;
      const t = rng.floats(c.rows * R, -2, 2);
      const b = rng.floats(c.slots * c.N * c.rank, -1, 1);
      const before = rng.floats(c.rows * c.N, -3, 3);
      const slots = rowSlotsFor(rng, c.rows, c.slots);
      const out = placed(rt, 'f32', before, 0);
      rt.write(out, new Float32Array(GUARD).fill(NaN), out.length);
      const rec = rt.recorder();
      loraExpand(rt, rec, { t: rt.upload('f32', t), b: weights(rt, rng, b, c.N * c.rank), rowSlots: rt.upload('u32', slots), out, ...c });
      await rec.submit();
      const got = await readAround(rt, out);
      const ref = loraExpandRef(before, t, b, slots, c);
      // the error is judged on the rows with an adapter alone (the others would dilute it)
      const adapterRows = [...slots.keys()].filter((row) => slots[row]! < c.slots);
      const pick = (v: ArrayLike<number>) => adapterRows.flatMap((row) => Array.from({ length: c.N }, (_, n) => v[row * c.N + n]!));
      expect(relativeError(pick(got.values), pick(ref))).toBeLessThanOrEqual(TOLERANCE.f32);
      const gotBits = new Uint32Array(got.values.buffer);
      const beforeBits = new Uint32Array(before.buffer);
      for (let row = 0; row < c.rows; row++) {
        if (slots[row]! < c.slots) continue;
        for (let n = 0; n < c.N; n++)
          if (gotBits[row * c.N + n] !== beforeBits[row * c.N + n]) throw new Error(`row ${row} column ${n} changed`);
      }
      for (const bits of got.tailBits) expect(bits).toBe(0x7fc00000);
    });
  }

  it('takes slices at offsets that are and are not multiples of 4 elements', async () => {
    const rt = runtime();
    const rng = new Rng(12);
    const c = { rows: 9, N: 100, rank: 8, slots: 2, segmentStarts: [40, 72] };
    const t = rng.floats(c.rows * 3 * c.rank, -2, 2);
    const b = rng.floats(c.slots * c.N * c.rank, -1, 1);
    const before = rng.floats(c.rows * c.N, -3, 3);
    const slots = rowSlotsFor(rng, c.rows, c.slots);
    const ref = loraExpandRef(before, t, b, slots, c);
    for (const offset of [4, 3, 67]) {
      const out = placed(rt, 'f32', before, offset + 1);
      const rec = rt.recorder();
      loraExpand(rt, rec, {
        t: placed(rt, 'f32', t, offset),
        b: placed(rt, 'f32', b, 2 * offset),
        rowSlots: placed(rt, 'u32', slots, offset),
        out,
        ...c,
      });
      await rec.submit();
      expect(relativeError(await rt.readFloats(out), ref)).toBeLessThanOrEqual(TOLERANCE.f32);
    }
  });

  it('rejects bad arguments with typed errors', () => {
    const rt = runtime();
    const rec = rt.recorder();
    const base = {
      t: rt.tensor('f32', 64),
      b: rt.tensor('f32', 3 * 16 * 4),
      rowSlots: rt.tensor('u32', 2),
      out: rt.tensor('f32', 2 * 16),
      rows: 2,
      N: 16,
      rank: 4,
      slots: 3,
      segmentStarts: [4, 8],
    };
    expect(() => loraExpand(rt, rec, { ...base, N: 0 })).toThrow(RangeError);
    expect(() => loraExpand(rt, rec, { ...base, rank: -4 })).toThrow(RangeError);
    for (const segmentStarts of [[0], [16], [8, 4], [4, 4], [2.5], [4, 8, 12], [NaN]]) {
      expect(() => loraExpand(rt, rec, { ...base, segmentStarts })).toThrow(RangeError);
    }
    expect(() => loraExpand(rt, rec, { ...base, slots: 4 })).toThrow(/b has 192 elements, needs 256/);
    expect(() => loraExpand(rt, rec, { ...base, t: rt.tensor('f32', 23) })).toThrow(/t has 23/);
    expect(() => loraExpand(rt, rec, { ...base, out: rt.tensor('f32', 31) })).toThrow(/out has 31/);
    expect(() => loraExpand(rt, rec, { ...base, rowSlots: rt.tensor('i32', 2) })).toThrow(TypeError);
    expect(() => loraExpand(rt, rec, { ...base, b: rt.tensor('f16', 192) })).toThrow(TypeError);
    expect(() => loraExpand(rt, rec, { ...base, out: { ...base.t, byteOffset: 128, length: 32 } })).toThrow(/overlap/);
    const wide = rt.tensor('f32', 2048);
    expect(() => loraExpand(rt, rec, { ...base, t: sliceTensor(wide, 0, 24), out: sliceTensor(wide, 1024, 32) })).toThrow(
      /out and t share a buffer/,
    );
    expect(rec.dispatchCount).toBe(0);
  });
});
