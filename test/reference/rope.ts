/**
 * float64 reference for RoPE, written the way transformers writes it rather than as the
 * kernel's pairs:
 * - 'half' (modeling_llama): emb = cat(freqs, freqs); out = x * cos + rotate_half(x) * sin,
 *   rotate_half(x) = cat(-x2, x1) on the two halves of the rotary part.
 * - 'interleaved' (modeling_glm / modeling_glm4): cos, sin = emb[..., :rd/2] repeated with
 *   repeat_interleave(2); rotate_half(x) = stack(-x[1::2], x[0::2]).flatten().
 * Values past rotaryDim pass through. The angle is rounded to f32 (freqs are f32 in
 * transformers); cos and sin of it are taken in float64.
 */
import type { RopeLayout } from '../../src/kernels/rope.js';

export interface RopeRefOptions {
  rows: number;
  nHeads: number;
  headDim: number;
  rotaryDim: number;
  layout: RopeLayout;
  rowStride?: number;
  offset?: number;
}

export function ropeRef(x: ArrayLike<number>, positions: ArrayLike<number>, invFreq: ArrayLike<number>, o: RopeRefOptions): Float64Array {
  const rd = o.rotaryDim;
  const rowStride = o.rowStride ?? o.nHeads * o.headDim;
  const offset = o.offset ?? 0;
  const out = Float64Array.from(x);
  for (let r = 0; r < o.rows; r++) {
    // emb = cat(freqs, freqs): rd angles
    const freqs = Array.from({ length: rd / 2 }, (_, i) => Math.fround(positions[r]! * invFreq[i]!));
    const emb = [...freqs, ...freqs];
    const angles = o.layout === 'half' ? emb : emb.slice(0, rd / 2).flatMap((a) => [a, a]);
    const cos = angles.map(Math.cos);
    const sin = angles.map(Math.sin);
    for (let h = 0; h < o.nHeads; h++) {
      const base = offset + r * rowStride + h * o.headDim;
      const v = Array.from({ length: rd }, (_, d) => x[base + d]!);
      const rotated = o.layout === 'half' ? rotateHalf(v) : rotateHalfInterleaved(v);
      for (let d = 0; d < rd; d++) out[base + d] = v[d]! * cos[d]! + rotated[d]! * sin[d]!;
    }
  }
  return out;
}

function rotateHalf(v: number[]): number[] {
  const h = v.length / 2;
  return [...v.slice(h).map((a) => -a), ...v.slice(0, h)];
}

function rotateHalfInterleaved(v: number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < v.length; i += 2) out.push(-v[i + 1]!, v[i]!);
  return out;
}

/** transformers' default inverse frequencies, then llama3 scaling, in float64, for checking ropeInvFreq. */
export function llama3InvFreqRef(
  rotaryDim: number,
  theta: number,
  s: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number },
): number[] {
  const out: number[] = [];
  for (let i = 0; i < rotaryDim; i += 2) {
    const inv = 1 / theta ** (i / rotaryDim);
    const wavelen = (2 * Math.PI) / inv;
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    // torch.where chain of _compute_llama3_parameters
    let scaled = wavelen > lowWavelen ? inv / s.factor : inv;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    const smoothed = ((1 - smooth) * scaled) / s.factor + smooth * scaled;
    const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
    if (medium) scaled = smoothed;
    out.push(scaled);
  }
  return out;
}
