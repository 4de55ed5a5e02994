/** float64 reference for mixture-of-experts routing (Qwen3MoeSparseMoeBlock's router). */

/**
 * Per row: p = softmax(logits[row]), the topK largest p best first (equal p: lower expert
 * first), weights = those p, divided by their sum when `normalize`.
 */
export function moeRouteRef(
  logits: Float32Array,
  rows: number,
  experts: number,
  topK: number,
  normalize: boolean,
): { ids: Uint32Array; weights: Float64Array } {
  const ids = new Uint32Array(rows * topK);
  const weights = new Float64Array(rows * topK);
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * experts, (r + 1) * experts);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    const exps = Array.from(row, (v) => Math.exp(v - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    const p = exps.map((e) => e / sum);
    // a stable sort keeps equal probabilities in expert order
    const order = Array.from({ length: experts }, (_, e) => e).sort((a, b) => p[b]! - p[a]!);
    const chosen = order.slice(0, topK);
    const chosenSum = normalize ? chosen.reduce((a, e) => a + p[e]!, 0) : 1;
    chosen.forEach((e, s) => {
      ids[r * topK + s] = e;
      weights[r * topK + s] = p[e]! / chosenSum;
    });
  }
  return { ids, weights };
}
