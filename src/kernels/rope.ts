/**
 * Rotary position embedding: the host-side inverse frequencies (with linear and Llama-3
 * scaling) and the in-place kernel, in both pair layouts.
 */
import { AutoGlmError } from '../errors.js';
import { assertF32, assertNoOverlap, assertNonNegativeInt, assertPositiveInt, assertU32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

/**
 * Which values of a head rotate together.
 * - 'half': (i, i + rotaryDim / 2), transformers' rotate_half (Llama, Qwen, NeoX).
 * - 'interleaved': (2i, 2i + 1), GLM / GLM-4 (cos and sin repeat_interleave(2)).
 * In both, pair i turns by position * invFreq[i].
 */
export type RopeLayout = 'half' | 'interleaved';

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface RopeInvFreqOptions {
  /** Rotated values per head: head_dim * partial_rotary_factor; even. */
  rotaryDim: number;
  /** rope_theta. */
  theta: number;
  scaling?: RopeScaling;
}

/**
 * invFreq[i] = theta^(-2i / rotaryDim) for i < rotaryDim / 2, then scaled as
 * transformers' modeling_rope_utils does: 'linear' divides every frequency by factor;
 * 'llama3' (_compute_llama3_parameters) leaves wavelengths below
 * original / highFreqFactor alone, divides those above original / lowFreqFactor by
 * factor, and blends smoothly between.
 */
export function ropeInvFreq(o: RopeInvFreqOptions): Float32Array {
  const { rotaryDim, theta, scaling } = o;
  if (!Number.isInteger(rotaryDim) || rotaryDim < 2 || rotaryDim % 2 !== 0) {
    throw new AutoGlmError('model_load_failed', `RoPE: rotary dim must be a positive even integer, got ${rotaryDim}`);
  }
  if (!(theta > 0)) throw new AutoGlmError('model_load_failed', `RoPE: rope_theta must be positive, got ${theta}`);
  if (scaling && !(scaling.factor > 0))
    throw new AutoGlmError('model_load_failed', `RoPE: scaling factor must be positive, got ${scaling.factor}`);
  const half = rotaryDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const base = 1 / theta ** ((2 * i) / rotaryDim);
    out[i] = scaling ? scaleFrequency(base, scaling) : base;
  }
  return out;
}

function scaleFrequency(invFreq: number, s: RopeScaling): number {
  if (s.type === 'linear') return invFreq / s.factor;
  if (!(s.highFreqFactor > s.lowFreqFactor) || !(s.originalMaxPositionEmbeddings > 0)) {
    throw new AutoGlmError(
      'model_load_failed',
      `RoPE llama3 scaling needs highFreqFactor > lowFreqFactor and originalMaxPositionEmbeddings > 0, got ${JSON.stringify(s)}`,
    );
  }
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  const wavelen = (2 * Math.PI) / invFreq;
  if (wavelen < highFreqWavelen) return invFreq;
  if (wavelen > lowFreqWavelen) return invFreq / s.factor;
  const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
  return ((1 - smooth) * invFreq) / s.factor + smooth * invFreq;
}

export interface RopeOptions {
  /** f32 rows of nHeads * headDim values (q or k), rotated in place. */
  x: GpuTensor;
  /** u32 [rows]: the absolute position of each row. */
  positions: GpuTensor;
  /** f32 [rotaryDim / 2], from ropeInvFreq. */
  invFreq: GpuTensor;
  rows: number;
  nHeads: number;
  headDim: number;
  /** Rotated values at the start of each head (partial rotary); default headDim. */
  rotaryDim?: number;
  layout: RopeLayout;
  /** Elements from one row to the next; default nHeads * headDim (a fused QKV row is wider). */
  rowStride?: number;
  /** Element offset of row 0's first head (where q or k starts in a fused QKV row); default 0. */
  offset?: number;
}

/** The rotated part of a head: an even number of values, at most the head. */
export function assertRotaryDim(op: string, rotaryDim: number, headDim: number): void {
  if (rotaryDim % 2 !== 0 || rotaryDim > headDim) {
    throw new RangeError(`${op}: rotaryDim ${rotaryDim} must be even and at most headDim ${headDim}`);
  }
}

/** Records RoPE over `rows` rows of x, in place. */
export function rope(rt: KernelRuntime, rec: Recorder, o: RopeOptions): void {
  const op = 'rope';
  const rotaryDim = o.rotaryDim ?? o.headDim;
  const rowStride = o.rowStride ?? o.nHeads * o.headDim;
  const offset = o.offset ?? 0;
  assertPositiveInt(op, { rows: o.rows, nHeads: o.nHeads, headDim: o.headDim, rotaryDim, rowStride });
  assertNonNegativeInt(op, { offset });
  assertRotaryDim(op, rotaryDim, o.headDim);
  if (rowStride < o.nHeads * o.headDim) throw new RangeError(`${op}: rowStride ${rowStride} is less than nHeads * headDim`);
  assertF32(op, o.x, o.invFreq);
  assertU32(op, 'positions', o.positions);
  assertLength(op, 'x', o.x, offset + (o.rows - 1) * rowStride + o.nHeads * o.headDim);
  assertLength(op, 'positions', o.positions, o.rows);
  assertLength(op, 'invFreq', o.invFreq, rotaryDim / 2);
  assertNoOverlap(op, ['x', 'positions'], o.x, o.positions);
  assertNoOverlap(op, ['x', 'invFreq'], o.x, o.invFreq);
  const n = o.rows * o.nHeads * (rotaryDim / 2);
  const kernel = rt.kernel({
    shader: 'rope',
    defines: { INTERLEAVED: o.layout === 'interleaved' },
    bindings: ['write', 'read', 'read'],
    params: true,
  });
  rec.dispatch(
    kernel,
    [o.x, o.positions, o.invFreq],
    params()
      .u32(n)
      .u32(o.nHeads)
      .u32(o.headDim)
      .u32(rotaryDim / 2)
      .u32(rowStride)
      .u32(offset),
    grid1d(n, 256),
  );
}
