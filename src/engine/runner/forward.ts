/**
 * One engine step of the transformer, recorded into one command buffer.
 *
 * Reads top to bottom like a textbook forward pass: embed, then per layer attention and
 * MLP with their norms and residuals, then the final norm and the LM head on just the rows
 * that are sampled. Architecture differences are data in `GpuModel` (optional norms, RoPE
 * layout, activation), never branches on an architecture name.
 *
 * Folded norms (`foldNorms`, the default): every RMSNorm of the residual stream feeds
 * exactly one matmul (q/k/v, gate/up, the LM head), so it runs inside that matmul
 * (MatmulArgs.normX), and the o and down projections add their output into the residual
 * stream in place (accumulate): two dispatches per layer fewer and no normed copy of the
 * hidden states. Post-norms (GLM-4, Gemma 2/3) normalise a projection's output before the
 * residual add: that projection writes its own rows and the post-norm adds its result into
 * the residual stream (rmsNorm accumulate), two dispatches per layer where unfolded takes four.
 * A mixture-of-experts MLP (Qwen3-MoE) reads its normed input twice (router and experts), so
 * its norm runs as a pass of its own.
 */
import { attention } from '../../kernels/attention.js';
import { embedding } from '../../kernels/embedding.js';
import { gatherRows } from '../../kernels/gather-rows.js';
import { defaultMatmulTuning, matmul, narrowOutputTuning, type MatmulArgs, type MatmulWeight } from '../../kernels/matmul.js';
import { gatedActivation } from '../../kernels/activation.js';
import { loraExpand, loraShrink } from '../../kernels/lora.js';
import { addRmsNorm, rmsNorm } from '../../kernels/rmsnorm.js';
import { ropeKvWrite } from '../../kernels/rope-kv-write.js';
import { softcap } from '../../kernels/softcap.js';
import type { Recorder } from '../../kernels/recorder.js';
import type { KernelRuntime } from '../../kernels/runtime.js';
import { sliceTensor, type GpuTensor } from '../../kernels/tensor.js';
import type { LoraTarget } from '../lora/lora-weights.js';
import { moeGroup } from '../../kernels/moe-group.js';
import { moeMatmul, moeMatmulGrouped } from '../../kernels/moe-matmul.js';
import { moeRoute } from '../../kernels/moe-route.js';
import { moeWeightedSum } from '../../kernels/moe-sum.js';
import { sigmoidGatedAdd } from '../../kernels/sigmoid-gated-add.js';
import type { GpuModel, GpuModelShape, GpuMoe } from './gpu-model.js';
import type { StepBuffers, StepPlan } from './step-buffers.js';

/** Records the forward pass of one batch: logits for `plan.sampleRows` rows land in `buf.logits`. */
export function recordForward(
  rt: KernelRuntime,
  rec: Recorder,
  model: GpuModel,
  kv: { k: GpuTensor; v: GpuTensor }[],
  buf: StepBuffers,
  plan: StepPlan,
  options: { foldNorms: boolean },
): void {
  const s = model.shape;
  const fold = options.foldNorms;
  const normX = (weight: GpuTensor) => (fold ? { weight, eps: s.normEps, onePlus: s.normOnePlus } : undefined);
  const rows = plan.rows;
  const hidden = rowsOf(buf.hidden, rows, s.hiddenSize);
  const normed = rowsOf(buf.normed, rows, s.hiddenSize);
  // q, k and v side by side in each row of one projection's output
  const qWidth = s.numHeads * s.headDim;
  const kvWidth = s.numKvHeads * s.headDim;
  const qkvWidth = qWidth + 2 * kvWidth;
  const qkv = rowsOf(buf.qkv, rows, qkvWidth);
  const attnOut = rowsOf(buf.attn, rows, s.numHeads * s.headDim);
  const blockOut = rowsOf(buf.blockOut, rows, s.hiddenSize);
  const norm = { rows, dim: s.hiddenSize, eps: s.normEps, onePlus: s.normOnePlus };
  const headNorm = { rows, dim: s.headDim, eps: s.normEps, onePlus: s.normOnePlus, rowStride: qkvWidth };
  // Where the o and down projections write: folded without a post-norm, added straight into
  // the residual stream; otherwise rows of their own, which a post-norm then normalises
  const projectionOut = (post: GpuTensor | undefined) => (fold && !post ? { out: hidden, accumulate: true } : { out: blockOut });
  // folded: hidden += norm(blockOut); unfolded: normalised in place, added by the next addRmsNorm
  const postNorm = (weight: GpuTensor | undefined): void => {
    if (!weight) return;
    if (fold) rmsNorm(rt, rec, { x: blockOut, weight, out: hidden, accumulate: true, ...norm });
    else rmsNorm(rt, rec, { x: blockOut, weight, out: blockOut, ...norm });
  };
  // steps the matmuls run as GEMVs (decode-sized)
  const gemvMaxRows = defaultMatmulTuning(rt).gemvMaxRows;
  // LoRA (only in steps where some row has an adapter): each adapted projection's output
  // gets its rows' B A x added, from the same input (and folded norm) as the matmul
  const loras = plan.lora || plan.loraRuns.length > 0 ? model.loras : undefined;
  const shrinkTuning = narrowOutputTuning(rt);
  const addLora = (target: LoraTarget | undefined, x: GpuTensor, out: GpuTensor, norm?: ReturnType<typeof normX>): void => {
    if (!loras || !target || !buf.lora) return;
    const t = rowsOf(buf.lora.t, rows, target.R);
    const normed = norm ? { normX: norm } : {};
    // first the per-row kernels (their shrink writes zeros to t's rows without an adapter
    // of theirs, the runs' rows among them), then the runs through the GEMM; each only where
    // an adapter of its rows changes this projection (a q/v-only adapter in slots kept for
    // every projection would otherwise pay the dispatches of all of them)
    if (plan.lora && plan.loraRowSlots.some((slot) => target.live[slot] === true)) {
      const perRow = { rowSlots: buf.lora.rowSlots, t, rows, slots: loras.capacity };
      loraShrink(rt, rec, { ...perRow, x, a: target.a, K: target.K, R: target.R, ...normed });
      loraExpand(rt, rec, { ...perRow, b: target.b, out, N: target.N, rank: loras.rank, segmentStarts: target.segmentStarts });
    }
    for (const run of plan.loraRuns) {
      if (target.live[run.slot] !== true) continue;
      const rowsIn = (tensor: GpuTensor, width: number) => sliceTensor(tensor, run.start * width, run.count * width);
      const { a, b } = target.gemm[run.slot]!; // written with the adapter the run's sequence uses
      matmul(rt, rec, { x: rowsIn(x, target.K), ...normed, weight: a, out: rowsIn(t, target.R), M: run.count, tuning: shrinkTuning });
      matmul(rt, rec, { x: rowsIn(t, target.R), weight: b, out: rowsIn(out, target.N), M: run.count, accumulate: true });
    }
  };

  // token embeddings
  embedding(rt, rec, { ids: plan.tokenIds, parts: model.embedding.parts, out: hidden, rows, dim: s.hiddenSize });

  for (let l = 0; l < model.layers.length; l++) {
    const layer = model.layers[l]!;
    const cache = kv[l]!;
    const lora = loras?.layers[l] ?? {};

    // attention input norm (fused with the previous layer's MLP residual add, or folded into
    // the q/k/v matmul), then q, k, v projections, one matmul
    if (!fold) {
      if (l === 0) rmsNorm(rt, rec, { x: hidden, weight: layer.inputNorm, out: normed, ...norm });
      else addRmsNorm(rt, rec, { residual: hidden, x: blockOut, weight: layer.inputNorm, out: normed, ...norm });
    }
    matmul(rt, rec, { x: fold ? hidden : normed, normX: normX(layer.inputNorm), weight: layer.qkv, out: qkv, M: rows });
    addLora(lora.qkv, fold ? hidden : normed, qkv, normX(layer.inputNorm));

    // per-head q/k norms (Qwen3), in place inside the fused rows
    if (layer.qNorm) rmsNorm(rt, rec, { x: qkv, weight: layer.qNorm, segments: s.numHeads, offset: 0, ...headNorm });
    if (layer.kNorm) rmsNorm(rt, rec, { x: qkv, weight: layer.kNorm, segments: s.numKvHeads, offset: qWidth, ...headNorm });

    // rotary position embedding of q and k, and the new keys and values into the paged
    // cache, in one dispatch; then attention over the cache
    ropeKvWrite(rt, rec, {
      qkv,
      positions: plan.positions,
      invFreq: layer.invFreq,
      slots: plan.slots,
      kCache: cache.k,
      vCache: cache.v,
      rows,
      nHeads: s.numHeads,
      nKvHeads: s.numKvHeads,
      headDim: s.headDim,
      rotaryDim: s.rotaryDim,
      layout: s.ropeLayout,
      rowStride: qkvWidth,
      blockSize: plan.blockSize,
    });
    attention(rt, rec, plan.attention, {
      q: qkv,
      qStride: qkvWidth,
      kCache: cache.k,
      vCache: cache.v,
      out: attnOut,
      nHeads: s.numHeads,
      nKvHeads: s.numKvHeads,
      headDim: s.headDim,
      blockSize: plan.blockSize,
      scale: s.attentionScale,
      softcap: s.attentionSoftcap,
      slidingWindow: layer.slidingWindow,
    });

    // output projection (+ GLM-4's and Gemma's post-attention-output norm); folded: added into hidden
    const attnResidual = projectionOut(layer.postAttnOutNorm);
    matmul(rt, rec, { x: attnOut, weight: layer.o, M: rows, ...attnResidual });
    addLora(lora.o, attnOut, attnResidual.out);
    postNorm(layer.postAttnOutNorm);

    // residual add + MLP input norm (folded: inside the gate/up matmul)
    if (!fold) addRmsNorm(rt, rec, { residual: hidden, x: blockOut, weight: layer.preMlpNorm, out: normed, ...norm });

    // MLP: fused gate/up, activation, down (+ GLM-4's and Gemma's post-MLP-output norm), or
    // the mixture of experts
    const mlpResidual = projectionOut(layer.postMlpOutNorm);
    if (layer.moe) {
      // the router and the experts all read the normed rows: made once (folded: not yet made)
      if (fold) rmsNorm(rt, rec, { x: hidden, weight: layer.preMlpNorm, out: normed, ...norm });
      mixtureOfExperts(rt, rec, layer.moe, buf, { x: normed, rows, activation: s.activation, gemvMaxRows, ...mlpResidual });
    } else {
      gatedMlp(rt, rec, buf, {
        x: fold ? hidden : normed,
        normX: normX(layer.preMlpNorm),
        gateUp: layer.gateUp!,
        down: layer.down!,
        rows,
        inner: s.intermediateSize,
        activation: s.activation,
        gemvMaxRows,
        ...mlpResidual,
        loraGateUp: (gateUp) => addLora(lora.gateUp, fold ? hidden : normed, gateUp, normX(layer.preMlpNorm)),
        // an adapted down projection reads the activated rows, so they are made whatever the step's size
        loraDown: loras && lora.down ? (act) => addLora(lora.down, act, mlpResidual.out) : undefined,
      });
    }
    postNorm(layer.postMlpOutNorm);
  }

  // last residual add + final norm (folded: inside the LM head)
  if (!fold) addRmsNorm(rt, rec, { residual: hidden, x: blockOut, weight: model.finalNorm, out: normed, ...norm });

  // LM head on the sampled rows only: a step of nothing but a long prompt's first chunks
  // (longer than the step's token budget) samples no row and has none to run
  if (plan.sampleCount === 0) return;
  const last = rowsOf(buf.sampledHidden, plan.sampleCount, s.hiddenSize);
  const src = fold ? hidden : normed;
  gatherRows(rt, rec, { src, indices: plan.sampleRows, out: last, srcRows: rows, count: plan.sampleCount, dim: s.hiddenSize });
  const logits = rowsOf(buf.logits, plan.sampleCount, s.vocabSize);
  matmul(rt, rec, { x: last, normX: normX(model.finalNorm), weight: model.lmHead, out: logits, M: plan.sampleCount });
  // Gemma 2: logits soft-capped before anything reads them (sampling, logprobs, penalties)
  if (s.finalLogitSoftcap > 0) softcap(rt, rec, { x: logits, count: plan.sampleCount * s.vocabSize, cap: s.finalLogitSoftcap });
}

/**
 * Pairs per expert (on average) from which a step takes the grouped expert matmuls: each
 * expert's weights read once per chunk of its pairs, for two more dispatches (grouping, and
 * the weighted sum of the down projections). On lavapipe (f16, 16 experts, top 8, Qwen3-30B-A3B's
 * shapes) 16 tokens took 0.44-0.57x the time of one matmul per pair, one token 1.05x (gate/up)
 * and 1.3x (down); below about two pairs per expert the groups hold single pairs and the
 * extra dispatches buy nothing.
 */
const MOE_GROUPED_MIN_PAIRS_PER_EXPERT = 2;

/**
 * A mixture-of-experts MLP into `out` (added to it with `accumulate`: the residual stream):
 * the routed experts, then the shared expert where the model has one (Qwen2-MoE, GLM-4.5).
 */
function mixtureOfExperts(
  rt: KernelRuntime,
  rec: Recorder,
  moe: GpuMoe,
  buf: StepBuffers,
  o: { x: GpuTensor; rows: number; activation: GpuModelShape['activation']; gemvMaxRows: number; out: GpuTensor; accumulate?: boolean },
): void {
  routedExperts(rt, rec, moe, buf, o);
  const shared = moe.shared;
  if (!shared) return;
  // the shared expert adds into what the routed experts wrote; Qwen2-MoE's gated one goes
  // through scratch rows first (the pairs' down rows, read by now), scaled per row as it is added
  const { rows } = o;
  const gated = shared.gate ? rowsOf(buf.moe!.down, rows, shared.down.N) : undefined;
  gatedMlp(rt, rec, buf, {
    x: o.x,
    gateUp: shared.gateUp,
    down: shared.down,
    rows,
    inner: shared.inner,
    activation: o.activation,
    gemvMaxRows: o.gemvMaxRows,
    ...(gated ? { out: gated } : { out: o.out, accumulate: true }),
  });
  if (gated) sigmoidGatedAdd(rt, rec, { x: o.x, gate: shared.gate!, y: gated, out: o.out, rows, K: shared.gateUp.K, N: shared.down.N });
}

/**
 * The routed experts of a mixture: the router's logits, each row's topK experts and their
 * routing weights (moe-route.ts), each (row, expert) pair's gate/up and activation, and the
 * experts' down projections summed with the routing weights into `out` (added to it with
 * `accumulate`). Steps with few pairs per expert run one matmul per pair; others group the
 * pairs by expert first (MOE_GROUPED_MIN_PAIRS_PER_EXPERT).
 */
function routedExperts(
  rt: KernelRuntime,
  rec: Recorder,
  moe: GpuMoe,
  buf: StepBuffers,
  o: { x: GpuTensor; rows: number; activation: GpuModelShape['activation']; out: GpuTensor; accumulate?: boolean },
): void {
  const { rows } = o;
  const { topK, experts } = moe;
  const pairs = rows * topK;
  const N = moe.down.N;
  const b = buf.moe!;
  const logits = rowsOf(b.logits, rows, experts);
  const ids = sliceTensor(b.ids, 0, pairs);
  const weights = sliceTensor(b.weights, 0, pairs);
  const gateUp = rowsOf(b.gateUp, pairs, 2 * moe.inner);
  const act = rowsOf(b.act, pairs, moe.inner);
  const accumulate = o.accumulate === true;
  matmul(rt, rec, { x: o.x, weight: moe.router, out: logits, M: rows });
  moeRoute(rt, rec, { logits, ids, weights, rows, experts, topK, ...moe.routing });
  // each pair's down projection must fit one binding (a 2048-row prefill of a 2048-wide model
  // on lavapipe's 128 MiB would not): such a step keeps one matmul per pair
  const grouped = pairs >= MOE_GROUPED_MIN_PAIRS_PER_EXPERT * experts && pairs * N * 4 <= rt.maxBindingBytes;
  if (!grouped) {
    moeMatmul(rt, rec, { mode: 'expand', x: o.x, weight: moe.gateUp, ids, out: gateUp, rows, topK });
    gatedActivation(rt, rec, { x: gateUp, out: act, rows: pairs, inner: moe.inner, activation: o.activation });
    moeMatmul(rt, rec, { mode: 'combine', x: act, weight: moe.down, ids, routeWeights: weights, out: o.out, rows, topK, accumulate });
    return;
  }
  const groups = { offsets: b.offsets, order: sliceTensor(b.order, 0, pairs), pairs, topK };
  const down = rowsOf(b.down, pairs, N);
  moeGroup(rt, rec, { ids, pairs, experts, offsets: b.offsets, order: groups.order });
  moeMatmulGrouped(rt, rec, { input: 'row', x: o.x, weight: moe.gateUp, out: gateUp, ...groups });
  gatedActivation(rt, rec, { x: gateUp, out: act, rows: pairs, inner: moe.inner, activation: o.activation });
  moeMatmulGrouped(rt, rec, { input: 'pair', x: act, weight: moe.down, out: down, ...groups });
  moeWeightedSum(rt, rec, { y: down, ids, routeWeights: weights, out: o.out, rows, topK, N, experts, accumulate });
}

/**
 * A gated MLP (a dense layer's, or a mixture's shared expert): gate and up in one matmul,
 * the activation, the down projection into `out` (added with `accumulate`). The LoRA hooks
 * add a dense layer's adapters: after gate/up, and after down (which then needs the
 * activated rows made, whatever the step's size).
 */
function gatedMlp(
  rt: KernelRuntime,
  rec: Recorder,
  buf: StepBuffers,
  o: {
    x: GpuTensor;
    normX?: MatmulArgs['normX'];
    gateUp: MatmulWeight;
    down: MatmulWeight;
    rows: number;
    inner: number;
    activation: GpuModelShape['activation'];
    gemvMaxRows: number;
    out: GpuTensor;
    accumulate?: boolean;
    loraGateUp?: (gateUp: GpuTensor) => void;
    loraDown?: (act: GpuTensor) => void;
  },
): void {
  const { rows } = o;
  const gateUp = rowsOf(buf.gateUp, rows, 2 * o.inner);
  const target = { out: o.out, ...(o.accumulate ? { accumulate: true } : {}) };
  matmul(rt, rec, { x: o.x, ...(o.normX ? { normX: o.normX } : {}), weight: o.gateUp, out: gateUp, M: rows });
  o.loraGateUp?.(gateUp);
  if (rows <= o.gemvMaxRows && !o.loraDown) {
    // decode-sized steps: the down projection applies the activation as it loads its
    // input (one dispatch and one pass over [rows, 2 * inner] fewer)
    matmul(rt, rec, { x: gateUp, gated: o.activation, weight: o.down, M: rows, ...target });
    return;
  }
  // taller steps: the GEMM reloads each input once per column tile, so the activation
  // runs once on its own (fused it timed 1.0-1.2x at 9-512 rows on lavapipe)
  const act = rowsOf(buf.act, rows, o.inner);
  gatedActivation(rt, rec, { x: gateUp, out: act, rows, inner: o.inner, activation: o.activation });
  matmul(rt, rec, { x: act, weight: o.down, M: rows, ...target });
  o.loraDown?.(act);
}

function rowsOf(t: GpuTensor, rows: number, width: number): GpuTensor {
  return sliceTensor(t, 0, rows * width);
}
