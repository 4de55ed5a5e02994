/** float64 reference for causal paged attention over a varlen batch (logical, unpaged K/V). */

export interface RefSeq {
  qStart: number;
  qLen: number;
  kvLen: number;
  /** [kvLen, nKvHeads, headDim] keys of positions 0..kvLen-1. */
  keys: ArrayLike<number>;
  /** [kvLen, nKvHeads, headDim]. */
  values: ArrayLike<number>;
}

export interface RefAttention {
  /** [rows, nHeads, headDim]. */
  q: ArrayLike<number>;
  rows: number;
  seqs: readonly RefSeq[];
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  scale: number;
  /** 0 = none. */
  slidingWindow: number;
  /** Logit soft-capping: scores s = scale * q.k become softcap * tanh(s / softcap); undefined or 0 = none. */
  softcap?: number;
}

/** out[row, head, :] = softmax(cap(scale * q.K^T) over visible keys) V, in float64. */
export function attentionRef(a: RefAttention): Float64Array {
  const { nHeads, nKvHeads, headDim: hd } = a;
  const group = nHeads / nKvHeads;
  const cap = a.softcap ?? 0;
  const out = new Float64Array(a.rows * nHeads * hd);
  for (const s of a.seqs) {
    for (let j = 0; j < s.qLen; j++) {
      const row = s.qStart + j;
      const pos = s.kvLen - s.qLen + j;
      const lo = a.slidingWindow > 0 ? Math.max(0, pos - a.slidingWindow + 1) : 0;
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / group);
        const qo = (row * nHeads + h) * hd;
        const scores = new Float64Array(pos + 1 - lo);
        let max = -Infinity;
        for (let t = lo; t <= pos; t++) {
          const ko = (t * nKvHeads + kvh) * hd;
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += a.q[qo + d]! * s.keys[ko + d]!;
          scores[t - lo] = cap > 0 ? cap * Math.tanh((dot * a.scale) / cap) : dot * a.scale;
          max = Math.max(max, scores[t - lo]!);
        }
        let sum = 0;
        for (let i = 0; i < scores.length; i++) sum += scores[i] = Math.exp(scores[i]! - max);
        for (let t = lo; t <= pos; t++) {
          const w = scores[t - lo]! / sum;
          const vo = (t * nKvHeads + kvh) * hd;
          for (let d = 0; d < hd; d++) out[qo + d] += w * s.values[vo + d]!;
        }
      }
    }
  }
  return out;
}
