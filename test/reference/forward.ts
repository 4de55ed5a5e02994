/**
 * A float64 forward pass written straight from the transformers definitions
 * (modeling_llama/mistral/qwen2/qwen2_moe/qwen3/qwen3_moe/glm/glm4/glm4_moe/gemma/gemma2/gemma3.py), sharing nothing with the GPU path
 * except the ModelSpec and the weight reader. One token at a time with its own KV cache,
 * so a sequence of n tokens costs O(n) per token.
 */
import { loadModelSpec } from '../../src/engine/model/config.js';
import {
  listWeights,
  ropeInvFreq,
  type LayerWeights,
  type ModelSpec,
  type MoeSpec,
  type TensorRef,
} from '../../src/engine/model/model-spec.js';
import { openModelWeights } from '../../src/engine/model/sharded.js';

export type ReferenceWeights = ReadonlyMap<string, Float64Array>;

/** Per layer, the keys and values of every position so far (after RoPE), [position][kvHeads * headDim]. */
export interface ReferenceCache {
  keys: Float64Array[][];
  values: Float64Array[][];
  /** Positions already in the cache. */
  length: number;
}

export interface GreedyOptions {
  maxTokens: number;
  /** Generation stops after emitting one of these (it is included in the result). */
  stopTokenIds?: readonly number[];
}

/** edit: changes the weights before the model is made (LoRA adapters merged into them). */
export async function loadReferenceModel(
  dir: string,
  edit?: (weights: Map<string, Float64Array>, spec: ModelSpec) => Promise<void>,
): Promise<ReferenceModel> {
  const spec = await loadModelSpec(dir);
  const weights = await openModelWeights(dir, { spec });
  try {
    const map = new Map<string, Float64Array>();
    for (const ref of listWeights(spec.weights)) map.set(ref.name, Float64Array.from(await weights.read(ref.name, 'f32')));
    await edit?.(map, spec);
    return new ReferenceModel(spec, map);
  } finally {
    await weights.close();
  }
}

export class ReferenceModel {
  private readonly invFreq: Float64Array;
  /** Gemma 3's sliding layers' RoPE (rope_local_base_freq). */
  private readonly localInvFreq: Float64Array | null;

  constructor(
    readonly spec: ModelSpec,
    private readonly weights: ReferenceWeights,
  ) {
    this.invFreq = ropeInvFreq(spec.rope);
    this.localInvFreq = spec.localRope ? ropeInvFreq(spec.localRope) : null;
  }

  newCache(): ReferenceCache {
    return { keys: this.spec.weights.layers.map(() => []), values: this.spec.weights.layers.map(() => []), length: 0 };
  }

  /** Logits (float64, [vocab]) for each token, fed at the cache's next positions. */
  forward(tokens: readonly number[], cache: ReferenceCache = this.newCache()): Float64Array[] {
    return tokens.map((t) => this.step(t, cache));
  }

  /** Feeds the prompt, then appends the argmax token until maxTokens or a stop id. */
  greedy(prompt: readonly number[], options: GreedyOptions): { tokens: number[]; logits: Float64Array[] } {
    const cache = this.newCache();
    let logits = this.forward(prompt, cache).at(-1)!;
    const tokens: number[] = [];
    const allLogits: Float64Array[] = [];
    while (tokens.length < options.maxTokens) {
      allLogits.push(logits);
      const next = argmax(logits);
      tokens.push(next);
      if (options.stopTokenIds?.includes(next)) break;
      logits = this.step(next, cache);
    }
    return { tokens, logits: allLogits };
  }

  private w(ref: TensorRef | undefined): Float64Array {
    if (!ref) throw new Error('reference: tensor missing from spec');
    const w = this.weights.get(ref.name);
    if (!w) throw new Error(`reference: weight ${ref.name} not loaded`);
    return w;
  }

  private step(token: number, cache: ReferenceCache): Float64Array {
    const s = this.spec;
    const H = s.hiddenSize;
    const pos = cache.length;
    // Gemma scales the embeddings by sqrt(hidden) (rounded to the checkpoint dtype: spec)
    const x = this.w(s.weights.embed)
      .slice(token * H, (token + 1) * H)
      .map((v) => v * s.embeddingScale);
    s.weights.layers.forEach((layer, l) => {
      // attention block
      const h = rmsNorm(x, this.w(layer.inputNorm), s.norm.eps, s.norm.onePlus);
      let a = this.attention(layer, l, h, pos, cache.keys[l]!, cache.values[l]!);
      if (layer.postSelfAttnNorm) a = rmsNorm(a, this.w(layer.postSelfAttnNorm), s.norm.eps, s.norm.onePlus);
      addInPlace(x, a);
      // MLP block
      let m = this.mlp(layer, rmsNorm(x, this.w(layer.postAttentionNorm), s.norm.eps, s.norm.onePlus));
      if (layer.postMlpNorm) m = rmsNorm(m, this.w(layer.postMlpNorm), s.norm.eps, s.norm.onePlus);
      addInPlace(x, m);
    });
    cache.length++;
    const h = rmsNorm(x, this.w(s.weights.finalNorm), s.norm.eps, s.norm.onePlus);
    const logits = matVec(this.w(s.weights.lmHead ?? s.weights.embed), h, s.vocabSize, H);
    // Gemma 2: final_logit_softcapping
    const cap = s.finalLogitSoftcap;
    return cap === null ? logits : logits.map((z) => cap * Math.tanh(z / cap));
  }

  private attention(
    layer: LayerWeights,
    l: number,
    h: Float64Array,
    pos: number,
    keys: Float64Array[],
    values: Float64Array[],
  ): Float64Array {
    const s = this.spec;
    const H = s.hiddenSize;
    const D = s.headDim;
    // sliding layers (all of Mistral's, every other of Gemma 2's, five in six of Gemma 3's)
    // see the window and, in Gemma 3, rotate with their own RoPE
    const sliding = s.slidingWindow !== null && s.slidingLayers[l]!;
    const invFreq = sliding && this.localInvFreq ? this.localInvFreq : this.invFreq;
    const q = matVec(this.w(layer.qProj), h, s.numHeads * D, H, layer.qBias && this.w(layer.qBias));
    const k = matVec(this.w(layer.kProj), h, s.numKvHeads * D, H, layer.kBias && this.w(layer.kBias));
    const v = matVec(this.w(layer.vProj), h, s.numKvHeads * D, H, layer.vBias && this.w(layer.vBias));
    for (let head = 0; head < s.numHeads; head++) this.headRope(q, head * D, pos, layer.qNorm, invFreq);
    for (let head = 0; head < s.numKvHeads; head++) this.headRope(k, head * D, pos, layer.kNorm, invFreq);
    keys.push(k);
    values.push(v);

    const out = new Float64Array(s.numHeads * D);
    const group = s.numHeads / s.numKvHeads;
    const first = sliding ? Math.max(0, pos - s.slidingWindow! + 1) : 0;
    const cap = s.attentionSoftcap;
    for (let head = 0; head < s.numHeads; head++) {
      const kvOff = Math.floor(head / group) * D;
      const scores: number[] = [];
      for (let j = first; j <= pos; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[head * D + d]! * keys[j]![kvOff + d]!;
        const score = dot * s.attentionScale;
        // Gemma 2: attn_logit_softcapping, after the scale, before the softmax
        scores.push(cap === null ? score : cap * Math.tanh(score / cap));
      }
      const max = Math.max(...scores);
      const e = scores.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let j = first; j <= pos; j++) {
        const p = e[j - first]! / sum;
        for (let d = 0; d < D; d++) out[head * D + d]! += p * values[j]![kvOff + d]!;
      }
    }
    return matVec(this.w(layer.oProj), out, H, s.numHeads * D, layer.oBias && this.w(layer.oBias));
  }

  /** Qwen3's and Gemma 3's per-head norm (when present), then RoPE on the head's first rotaryDim dimensions. */
  private headRope(x: Float64Array, off: number, pos: number, norm: TensorRef | undefined, invFreq: Float64Array): void {
    const s = this.spec;
    if (norm) x.set(rmsNorm(x.subarray(off, off + s.headDim), this.w(norm), s.norm.eps, s.norm.onePlus), off);
    const half = s.rope.rotaryDim / 2;
    for (let i = 0; i < half; i++) {
      // 'half': rotate_half pairs i with i + rotaryDim/2; 'interleaved' (GLM): 2i with 2i+1
      const a = s.rope.layout === 'half' ? off + i : off + 2 * i;
      const b = s.rope.layout === 'half' ? off + i + half : off + 2 * i + 1;
      const angle = pos * invFreq[i]!;
      const c = Math.cos(angle);
      const sn = Math.sin(angle);
      const x0 = x[a]!;
      const x1 = x[b]!;
      x[a] = x0 * c - x1 * sn;
      x[b] = x1 * c + x0 * sn;
    }
  }

  private mlp(layer: LayerWeights, h: Float64Array): Float64Array {
    if (layer.router) return this.mixtureOfExperts(layer, h);
    const s = this.spec;
    const I = s.intermediateSize;
    const H = s.hiddenSize;
    let gate: Float64Array;
    let up: Float64Array;
    if (layer.gateUpProj) {
      // GLM: gate_up_proj output chunked in two, gate first
      const gu = matVec(this.w(layer.gateUpProj), h, 2 * I, H);
      gate = gu.subarray(0, I);
      up = gu.subarray(I);
    } else {
      gate = matVec(this.w(layer.gateProj), h, I, H);
      up = matVec(this.w(layer.upProj), h, I, H);
    }
    return this.gatedMlp(gate, up, layer.downProj);
  }

  /** down(act(gate) * up). */
  private gatedMlp(gate: Float64Array, up: Float64Array, down: TensorRef | undefined): Float64Array {
    const s = this.spec;
    const act = s.activation === 'silu' ? silu : geluTanh;
    const a = new Float64Array(gate.length);
    for (let i = 0; i < gate.length; i++) a[i] = act(gate[i]!) * up[i]!;
    return matVec(this.w(down), a, s.hiddenSize, gate.length);
  }

  /**
   * The sparse MLP: the router's choice and weights (routing), the routing-weighted sum of
   * the chosen experts' MLPs, plus the shared expert where the model has one (Qwen2-MoE's
   * scaled by sigmoid(shared_expert_gate . h)).
   */
  private mixtureOfExperts(layer: LayerWeights, h: Float64Array): Float64Array {
    const s = this.spec;
    const moe = s.moe!;
    const H = s.hiddenSize;
    const EI = moe.expertIntermediateSize;
    const logits = matVec(this.w(layer.router), h, moe.numExperts, H);
    const routed =
      moe.scoring === 'softmax' ? softmaxRouting(logits, moe) : sigmoidRouting(logits, layer.routerBias && this.w(layer.routerBias), moe);
    const out = new Float64Array(H);
    for (const { expert: e, weight } of routed) {
      const gate = matVec(this.w(layer.expertGate![e]), h, EI, H);
      const up = matVec(this.w(layer.expertUp![e]), h, EI, H);
      const y = this.gatedMlp(gate, up, layer.expertDown![e]);
      for (let i = 0; i < H; i++) out[i]! += weight * y[i]!;
    }
    if (layer.sharedGateProj) {
      const SI = moe.sharedIntermediateSize;
      const gate = matVec(this.w(layer.sharedGateProj), h, SI, H);
      const up = matVec(this.w(layer.sharedUpProj), h, SI, H);
      const y = this.gatedMlp(gate, up, layer.sharedDownProj);
      const scale = layer.sharedExpertGate ? 1 / (1 + Math.exp(-matVec(this.w(layer.sharedExpertGate), h, 1, H)[0]!)) : 1;
      for (let i = 0; i < H; i++) out[i]! += scale * y[i]!;
    }
    return out;
  }
}

interface Routed {
  expert: number;
  weight: number;
}

/**
 * Qwen2/3-MoE (Qwen3MoeSparseMoeBlock): softmax over the router's logits, the top k (lower
 * index first on a tie), renormalised when norm_topk_prob.
 */
function softmaxRouting(logits: Float64Array, moe: MoeSpec): Routed[] {
  const max = Math.max(...logits);
  const p = logits.map((z) => Math.exp(z - max));
  const total = p.reduce((a, b) => a + b, 0);
  const order = Array.from(p.keys()).sort((a, b) => p[b]! - p[a]! || a - b);
  const chosen = order.slice(0, moe.topK);
  const norm = moe.normalizeTopK ? chosen.reduce((n, e) => n + p[e]!, 0) : total;
  return chosen.map((e) => ({ expert: e, weight: (p[e]! / norm) * moe.routedScale }));
}

/**
 * GLM-4.5 (Glm4MoeTopkRouter, DeepSeek-V3's): scores sigmoid(logits); the choice adds the
 * correction bias, keeps the topk_group best of n_group groups (a group's score: the sum of
 * its two best) and zeroes the rest (masked_fill 0.0); the weights are the unbiased scores
 * of the top k, over their sum + 1e-20 when norm_topk_prob, times routed_scaling_factor.
 */
function sigmoidRouting(logits: Float64Array, bias: Float64Array | undefined, moe: MoeSpec): Routed[] {
  const E = moe.numExperts;
  const score = logits.map((z) => 1 / (1 + Math.exp(-z)));
  const choice = score.map((v, e) => v + (bias ? bias[e]! : 0));
  const size = E / moe.groups;
  const groupScore = Array.from({ length: moe.groups }, (_, g) => {
    const best = Array.from(choice.subarray(g * size, (g + 1) * size)).sort((a, b) => b - a);
    return best[0]! + best[1]!;
  });
  const kept = new Set(
    Array.from(groupScore.keys())
      .sort((a, b) => groupScore[b]! - groupScore[a]! || a - b)
      .slice(0, moe.topkGroup),
  );
  const masked = choice.map((v, e) => (kept.has(Math.floor(e / size)) ? v : 0));
  const chosen = Array.from(masked.keys())
    .sort((a, b) => masked[b]! - masked[a]! || a - b)
    .slice(0, moe.topK);
  const norm = moe.normalizeTopK ? chosen.reduce((n, e) => n + score[e]!, 0) + 1e-20 : 1;
  return chosen.map((e) => ({ expert: e, weight: (score[e]! / norm) * moe.routedScale }));
}

export function rmsNorm(x: Float64Array, w: Float64Array, eps: number, onePlus: boolean): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * r * (onePlus ? 1 + w[i]! : w[i]!);
  return out;
}

/** y = W x (+ b), W row-major [rows, cols]. */
export function matVec(W: Float64Array, x: Float64Array, rows: number, cols: number, bias?: Float64Array): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = bias ? bias[r]! : 0;
    const off = r * cols;
    for (let c = 0; c < cols; c++) acc += W[off + c]! * x[c]!;
    y[r] = acc;
  }
  return y;
}

function addInPlace(x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i]! += y[i]!;
}

const silu = (x: number): number => x / (1 + Math.exp(-x));
const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** Gap between the largest and second-largest logit. */
export function topGap(v: ArrayLike<number>): number {
  let a = -Infinity;
  let b = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (x > a) {
      b = a;
      a = x;
    } else if (x > b) b = x;
  }
  return a - b;
}
