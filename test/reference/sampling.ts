/**
 * float64 reference of the GPU sampler (src/kernels/sampling.ts): the same semantics,
 * written plainly with sorts, for tests to compare distributions and logprobs against.
 */

export interface RefSamplingParams {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  frequencyPenalty: number;
  presencePenalty: number;
}

export interface RefCounts {
  /** Generated-token count per token id. */
  generated: ArrayLike<number>;
  /** Non-zero where the token occurs in the prompt. */
  inPrompt: ArrayLike<number>;
}

export const NO_FILTERS: RefSamplingParams = {
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
};

/** Penalised logits (repetition, then frequency and presence), divided by the temperature (0 counts as 1). */
export function processLogits(logits: ArrayLike<number>, p: RefSamplingParams, counts?: RefCounts): Float64Array {
  const out = new Float64Array(logits.length);
  const t = p.temperature > 0 ? p.temperature : 1;
  for (let i = 0; i < logits.length; i++) {
    let l = logits[i]!;
    if (counts) {
      const g = counts.generated[i]!;
      if (g > 0 || counts.inPrompt[i]) {
        l = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty;
        l -= p.frequencyPenalty * g + (g > 0 ? p.presencePenalty : 0);
      }
    }
    out[i] = l / t;
  }
  return out;
}

export function logSoftmax(values: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < values.length; i++) m = Math.max(m, values[i]!);
  let s = 0;
  for (let i = 0; i < values.length; i++) s += Math.exp(values[i]! - m);
  const lse = m + Math.log(s);
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i]! - lse;
  return out;
}

/** Index of the largest value, lowest index on ties. */
export function argmaxRef(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Token ids by value descending, id ascending. */
export function rankByValue(values: ArrayLike<number>): number[] {
  const ids = Array.from({ length: values.length }, (_, i) => i);
  return ids.sort((a, b) => values[b]! - values[a]! || a - b);
}

/** The n best ids (value desc, id asc). */
export function topNRef(values: ArrayLike<number>, n: number): number[] {
  return rankByValue(values).slice(0, n);
}

/**
 * The distribution the sampler draws from: softmax of the processed values restricted to
 * the tokens kept by top-k (ties at the k-th kept), top-p over the top-k survivors
 * renormalised (smallest prefix by value reaching p, ties kept) and min-p.
 */
export function keptDistribution(processed: ArrayLike<number>, p: Pick<RefSamplingParams, 'topK' | 'topP' | 'minP'>): Float64Array {
  const n = processed.length;
  const order = rankByValue(processed);
  const m = processed[order[0]!]!;
  const w = Float64Array.from({ length: n }, (_, i) => Math.exp(processed[i]! - m));
  let threshold = -Infinity;
  if (p.topK > 0 && p.topK < n) threshold = processed[order[p.topK - 1]!]!;
  if (p.topP < 1) {
    let z = 0;
    for (let i = 0; i < n; i++) if (processed[i]! >= threshold) z += w[i]!;
    let cum = 0;
    for (const id of order) {
      cum += w[id]!;
      if (cum >= p.topP * z) {
        threshold = Math.max(threshold, processed[id]!);
        break;
      }
    }
  }
  const probs = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (processed[i]! >= threshold && w[i]! >= p.minP) {
      probs[i] = w[i]!;
      total += w[i]!;
    }
  }
  for (let i = 0; i < n; i++) probs[i]! /= total;
  return probs;
}

/** Inverse CDF in token-id order. */
export function drawRef(probs: ArrayLike<number>, u: number): number {
  let cum = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i]! <= 0) continue;
    cum += probs[i]!;
    last = i;
    if (u < cum) return i;
  }
  return last;
}

/** logit_bias: [rows, vocab] logits with each row's [token, bias] pairs added (float64). */
export function logitBiasRef(
  logits: ArrayLike<number>,
  vocab: number,
  perRow: readonly (readonly (readonly [number, number])[] | undefined)[],
): Float64Array {
  const out = Float64Array.from(logits);
  perRow.forEach((row, r) => {
    for (const [token, bias] of row ?? []) out[r * vocab + token]! += bias;
  });
  return out;
}
