import { describe, expect, it } from 'vitest';
import { rope, ropeInvFreq, type RopeLayout } from '../../src/kernels/rope.js';
import { isAutoGlmError } from '../../src/errors.js';
import { Rng } from '../helpers/random.js';
import { relativeError, TOLERANCE, useRuntime } from '../helpers/gpu.js';
import { llama3InvFreqRef, ropeRef } from '../reference/rope.js';

const runtime = useRuntime();

interface Case {
  rows: number;
  nHeads: number;
  headDim: number;
  rotaryDim: number;
  maxPosition: number;
  theta: number;
  before?: number;
  after?: number;
}

describe('rope', () => {
  const cases: Case[] = [
    { rows: 1, nHeads: 1, headDim: 2, rotaryDim: 2, maxPosition: 10, theta: 10000 },
    { rows: 7, nHeads: 3, headDim: 7, rotaryDim: 6, maxPosition: 100, theta: 10000 },
    { rows: 33, nHeads: 8, headDim: 64, rotaryDim: 64, maxPosition: 4096, theta: 10000 },
    // GLM: partial_rotary_factor 0.5 of head_dim 128
    { rows: 129, nHeads: 4, headDim: 128, rotaryDim: 64, maxPosition: 131072, theta: 10000 },
    // Phi-style partial rotary of an odd share
    { rows: 33, nHeads: 2, headDim: 80, rotaryDim: 32, maxPosition: 2048, theta: 10000 },
    // long-context positions: angles of 2e5 rad need the shader's range reduction
    { rows: 129, nHeads: 2, headDim: 128, rotaryDim: 128, maxPosition: 400000, theta: 1000000 },
    { rows: 4097, nHeads: 2, headDim: 32, rotaryDim: 32, maxPosition: 8192, theta: 500000 },
    // k inside a fused QKV row: offset past q, stride of the whole row
    { rows: 33, nHeads: 2, headDim: 64, rotaryDim: 64, maxPosition: 1000, theta: 10000, before: 8 * 64, after: 2 * 64 },
  ];
  for (const layout of ['half', 'interleaved'] as const satisfies readonly RopeLayout[]) {
    for (const c of cases) {
      const strided = c.before !== undefined;
      it(`${layout} rows=${c.rows} heads=${c.nHeads} headDim=${c.headDim} rotary=${c.rotaryDim} pos<${c.maxPosition}${strided ? ' (fused QKV slice)' : ''}`, async () => {
        const rt = runtime();
        const rng = new Rng(c.rows * 37 + c.headDim * 5 + c.rotaryDim + (layout === 'half' ? 0 : 1));
        const before = c.before ?? 0;
        const width = c.nHeads * c.headDim;
        const rowStride = before + width + (c.after ?? 0);
        const x = rng.floats(c.rows * rowStride, -2, 2);
        const positions = Uint32Array.from({ length: c.rows }, () => rng.int(c.maxPosition));
        positions[0] = c.maxPosition - 1;
        const invFreq = ropeInvFreq({ rotaryDim: c.rotaryDim, theta: c.theta });
        const t = rt.upload('f32', x);
        const o = { rows: c.rows, nHeads: c.nHeads, headDim: c.headDim, rotaryDim: c.rotaryDim, layout, rowStride, offset: before };
        const rec = rt.recorder();
        rope(rt, rec, { x: t, positions: rt.upload('u32', positions), invFreq: rt.upload('f32', invFreq), ...o });
        await rec.submit();
        const got = await rt.readFloats(t);
        const ref = ropeRef(x, positions, invFreq, o);
        expect(relativeError(got, ref)).toBeLessThanOrEqual(TOLERANCE.f32);
        // what does not rotate (past rotaryDim, and outside the slice) is untouched, bit for bit
        for (let r = 0; r < c.rows; r++) {
          for (let i = 0; i < rowStride; i++) {
            const inHeads = i >= before && i < before + width;
            if (inHeads && (i - before) % c.headDim < c.rotaryDim) continue;
            if (got[r * rowStride + i] !== x[r * rowStride + i]) throw new Error(`row ${r} element ${i} changed`);
          }
        }
      });
    }
  }

  it('the two layouts rotate different pairs', async () => {
    const rt = runtime();
    const rng = new Rng(3);
    const o = { rows: 5, nHeads: 1, headDim: 16, rotaryDim: 16 };
    const x = rng.floats(o.rows * 16);
    const positions = Uint32Array.from([1, 2, 3, 4, 5]);
    const invFreq = ropeInvFreq({ rotaryDim: 16, theta: 10000 });
    const t = rt.upload('f32', x);
    const rec = rt.recorder();
    rope(rt, rec, { x: t, positions: rt.upload('u32', positions), invFreq: rt.upload('f32', invFreq), ...o, layout: 'interleaved' });
    await rec.submit();
    const got = await rt.readFloats(t);
    expect(relativeError(got, ropeRef(x, positions, invFreq, { ...o, layout: 'half' }))).toBeGreaterThan(1e-2);
  });

  it('rejects an odd rotary dim or one wider than the head', () => {
    const rt = runtime();
    const rec = rt.recorder();
    const base = {
      x: rt.tensor('f32', 64),
      positions: rt.tensor('u32', 1),
      invFreq: rt.tensor('f32', 32),
      rows: 1,
      nHeads: 1,
      headDim: 64,
    };
    expect(() => rope(rt, rec, { ...base, rotaryDim: 7, layout: 'half' })).toThrow(RangeError);
    expect(() => rope(rt, rec, { ...base, rotaryDim: 66, layout: 'half' })).toThrow(RangeError);
  });
});

describe('ropeInvFreq', () => {
  it('default: theta^(-2i/d)', () => {
    const f = ropeInvFreq({ rotaryDim: 128, theta: 10000 });
    expect(f.length).toBe(64);
    expect(f[0]).toBe(1);
    for (let i = 0; i < 64; i++) expect(f[i]).toBe(Math.fround(10000 ** (-(2 * i) / 128)));
  });

  it('linear scaling divides every frequency by the factor', () => {
    const plain = ropeInvFreq({ rotaryDim: 64, theta: 10000 });
    const scaled = ropeInvFreq({ rotaryDim: 64, theta: 10000, scaling: { type: 'linear', factor: 4 } });
    for (let i = 0; i < 32; i++) expect(scaled[i]).toBe(Math.fround(plain[i]! / 4));
  });

  it('llama3 scaling matches transformers (Llama 3.1 parameters)', () => {
    const s = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    const got = ropeInvFreq({ rotaryDim: 128, theta: 500000, scaling: { type: 'llama3', ...s } });
    const ref = llama3InvFreqRef(128, 500000, s);
    const plain = ropeInvFreq({ rotaryDim: 128, theta: 500000 });
    let kept = 0;
    let divided = 0;
    let blended = 0;
    for (let i = 0; i < 64; i++) {
      expect(Math.abs(got[i]! - ref[i]!) / ref[i]!).toBeLessThanOrEqual(1e-6);
      const ratio = plain[i]! / got[i]!;
      if (Math.abs(ratio - 1) < 1e-6) kept++;
      else if (Math.abs(ratio - 8) < 1e-5) divided++;
      else blended++;
    }
    // all three regimes occur with these parameters
    expect(kept).toBeGreaterThan(0);
    expect(divided).toBeGreaterThan(0);
    expect(blended).toBeGreaterThan(0);
  });

  it('rejects impossible parameters with a typed error', () => {
    for (const bad of [
      { rotaryDim: 7, theta: 10000 },
      { rotaryDim: 64, theta: 0 },
    ]) {
      let err: unknown;
      try {
        ropeInvFreq(bad);
      } catch (e) {
        err = e;
      }
      expect(isAutoGlmError(err, 'model_load_failed')).toBe(true);
    }
  });
});
