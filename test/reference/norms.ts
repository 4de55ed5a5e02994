/** float64 references for RMSNorm and LayerNorm, written from their definitions. */

export interface RmsNormRefOptions {
  rows: number;
  dim: number;
  eps: number;
  onePlus?: boolean;
  segments?: number;
  rowStride?: number;
  offset?: number;
}

/**
 * RMSNorm of each `dim`-vector (segment s of row r at offset + r * rowStride + s * dim);
 * elements outside every vector are copied from x unchanged.
 */
export function rmsNormRef(x: ArrayLike<number>, weight: ArrayLike<number>, o: RmsNormRefOptions): Float64Array {
  const segments = o.segments ?? 1;
  const rowStride = o.rowStride ?? segments * o.dim;
  const offset = o.offset ?? 0;
  const out = Float64Array.from(x);
  for (let r = 0; r < o.rows; r++) {
    for (let s = 0; s < segments; s++) {
      const base = offset + r * rowStride + s * o.dim;
      let sumSq = 0;
      for (let d = 0; d < o.dim; d++) sumSq += x[base + d]! ** 2;
      const inv = 1 / Math.sqrt(sumSq / o.dim + o.eps);
      for (let d = 0; d < o.dim; d++) out[base + d] = x[base + d]! * inv * (o.onePlus ? 1 + weight[d]! : weight[d]!);
    }
  }
  return out;
}

/** residual + x, and the RMSNorm of that sum. */
export function addRmsNormRef(
  x: ArrayLike<number>,
  residual: ArrayLike<number>,
  weight: ArrayLike<number>,
  o: { rows: number; dim: number; eps: number; onePlus?: boolean },
): { residual: Float64Array; out: Float64Array } {
  const sum = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) sum[i] = residual[i]! + x[i]!;
  return { residual: sum, out: rmsNormRef(sum, weight, o) };
}

export function layerNormRef(
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  o: { rows: number; dim: number; eps: number },
): Float64Array {
  const out = new Float64Array(o.rows * o.dim);
  for (let r = 0; r < o.rows; r++) {
    const base = r * o.dim;
    let mean = 0;
    for (let d = 0; d < o.dim; d++) mean += x[base + d]!;
    mean /= o.dim;
    let variance = 0;
    for (let d = 0; d < o.dim; d++) variance += (x[base + d]! - mean) ** 2;
    variance /= o.dim;
    const inv = 1 / Math.sqrt(variance + o.eps);
    for (let d = 0; d < o.dim; d++) out[base + d] = (x[base + d]! - mean) * inv * weight[d]! + bias[d]!;
  }
  return out;
}
