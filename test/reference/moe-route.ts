/**
 * float64 references for mixture-of-experts routing: Qwen3MoeSparseMoeBlock's softmax router
 * and DeepseekV3TopkRouter's (= Glm4MoeTopkRouter's) sigmoid one.
 */

export interface MoeRouteRefOptions {
  /** 'softmax' (default) or 'sigmoid'. */
  scoring?: 'softmax' | 'sigmoid';
  /** sigmoid: [experts], added to the scores for the choice only (e_score_correction_bias). */
  bias?: ArrayLike<number>;
  /** sigmoid: n_group and topk_group (defaults 1 and 1: no limit). */
  groups?: number;
  topkGroup?: number;
  /** routed_scaling_factor, multiplied in last (default 1). */
  scale?: number;
}

/**
 * Per row, softmax: p = softmax(logits[row]), the topK largest p best first (equal p: lower
 * expert first), weights = those p, divided by their sum when `normalize`.
 *
 * sigmoid: score = sigmoid(logits[row]), choice = score + bias; with groups > 1 a group's
 * score is the sum of its two best choices, and the experts outside the topkGroup best
 * groups (equal scores: lower group first) choose with 0.0; the topK largest choices best
 * first (equal: lower expert first), weights = their unbiased scores, divided by their sum
 * + 1e-20 when `normalize`.
 *
 * Both then multiply the weights by `scale`.
 */
export function moeRouteRef(
  logits: Float32Array,
  rows: number,
  experts: number,
  topK: number,
  normalize: boolean,
  options: MoeRouteRefOptions = {},
): { ids: Uint32Array; weights: Float64Array } {
  const { scoring = 'softmax', bias, groups = 1, topkGroup = 1, scale = 1 } = options;
  const ids = new Uint32Array(rows * topK);
  const weights = new Float64Array(rows * topK);
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * experts, (r + 1) * experts);
    const { scores, choice, eps } = scoring === 'sigmoid' ? sigmoidChoiceRef(row, bias, groups, topkGroup) : softmaxScores(row);
    const chosen = bestFirst(choice).slice(0, topK);
    const chosenSum = normalize ? chosen.reduce((a, e) => a + scores[e]!, 0) + eps : 1;
    chosen.forEach((e, s) => {
      ids[r * topK + s] = e;
      weights[r * topK + s] = (scores[e]! / chosenSum) * scale;
    });
  }
  return { ids, weights };
}

export interface Scores {
  /** what the weights are */
  scores: number[];
  /** what the experts are ranked on */
  choice: number[];
  /** added to the chosen scores' sum before dividing by it */
  eps: number;
}

function softmaxScores(row: Float32Array): Scores {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  const exps = Array.from(row, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  const p = exps.map((e) => e / sum);
  return { scores: p, choice: p, eps: 0 };
}

/**
 * The sigmoid router's scores (its weights), choice values after any group mask (what it
 * ranks the experts on) and group scores (empty when groups == 1).
 */
export function sigmoidChoiceRef(
  row: Float32Array,
  bias: ArrayLike<number> | undefined,
  groups: number,
  topkGroup: number,
): Scores & { groupScores: number[] } {
  const scores = Array.from(row, (v) => 1 / (1 + Math.exp(-v)));
  const choice = scores.map((s, e) => s + (bias?.[e] ?? 0));
  const groupScores: number[] = [];
  if (groups > 1) {
    const size = choice.length / groups;
    for (let g = 0; g < groups; g++) {
      const [a, b] = choice.slice(g * size, (g + 1) * size).sort((x, y) => y - x);
      groupScores.push(a! + b!);
    }
    const picked = new Set(bestFirst(groupScores).slice(0, topkGroup));
    // masked_fill(~mask, 0.0): not -inf
    for (let e = 0; e < choice.length; e++) if (!picked.has(Math.floor(e / size))) choice[e] = 0;
  }
  return { scores, choice, eps: 1e-20, groupScores };
}

/** Indices by value, highest first; a stable sort keeps equal values in index order. */
export function bestFirst(values: number[]): number[] {
  return Array.from(values, (_, i) => i).sort((a, b) => values[b]! - values[a]!);
}
