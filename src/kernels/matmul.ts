/**
 * out[M, N] = x[M, K] @ W^T (+ bias), W prepared by prepareMatmulWeight (K-major parts).
 *
 * Two kernels: M <= 8 (decode) runs the GEMV (every row of x in every invocation's
 * registers, one pass over W: bandwidth-bound), larger M runs the register-blocked GEMM.
 * Shapes travel as params, so one pipeline serves every shape of a given variant.
 * Tile sizes differ between CPU adapters (lavapipe: a workgroup runs on one core, lanes
 * are SIMD lanes) and GPUs; `defaultMatmulTuning` picks them, bench/kernels.ts measures.
 * int8 weights (quantized at load, int8-quant.ts) have a GEMV and a GEMM of their own
 * (gemv-i8.wgsl, matmul-i8.wgsl) with the same tunings, dispatch and arguments.
 */
import type { Activation } from './activation.js';
import { params, type Params } from './params.js';
import { hasSubgroupsOf } from './subgroups.js';
import type { Binding, Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { Defines } from './shader-source.js';
import type { GpuTensor } from './tensor.js';
import { WEIGHT_BLOCK_COLS4, type MatmulWeight, type MatmulWeightPart } from './matmul-weight.js';

export { prepareMatmulWeight, columnsPerPart } from './matmul-weight.js';
export type { MatmulWeight, MatmulWeightInit, MatmulWeightPart, WeightDType } from './matmul-weight.js';

/** Rows up to which the GEMV path runs by default (MatmulTuning.gemvMaxRows). */
export const GEMV_MAX_ROWS = 8;

export interface MatmulTuning {
  /**
   * Rows up to which the GEMV runs (above it, the GEMM). GEMV_MAX_ROWS on both profiles: on
   * lavapipe the GEMV at 16 rows took 1.29-1.48x the GEMM's time and at 8 rows 0.54-0.72x
   * (the 100M model's shapes); untuned on GPUs (bench:kernels --sweep times both at 12-32 rows).
   */
  gemvMaxRows: number;
  /** GEMV: invocations along N per workgroup (4 columns each). */
  gemvWorkgroupN: number;
  /** GEMV: K split across the workgroup's y dimension, reduced in workgroup memory (1 = no split). */
  gemvSplitK: number;
  /**
   * GEMV, f16 weights: up to this many rows, each invocation reads eight columns as one
   * 16-byte load (gemv-f16x8.wgsl; needs gemvSplitK 1); more rows use gemv.wgsl. 0 = never.
   * On lavapipe (4096 x 4096, back to back) it took 15-28% less time than gemv.wgsl at
   * M = 1-3 and 5-8, and 8% more at M = 4.
   */
  gemvF16PairsMaxRows: number;
  /**
   * GEMV: narrow the workgroup (down to 8 invocations) until the dispatch has at least this
   * many workgroups. On CPU adapters a workgroup runs on one core, so a 256-column k/v
   * projection in one 64-wide workgroup ran on one core of many. 1 = keep gemvWorkgroupN.
   */
  gemvMinWorkgroups: number;
  /**
   * GEMV without a K split, from this many rows (0 = never): x shared across the subgroup,
   * each lane loading one x per row for eight k steps (as gemmShareX 8), where the adapter
   * has subgroups of >= 8 lanes. On lavapipe, against one vec4 x load per row per four steps
   * (interleaved A/B, 2026-11-29): 4096 x 4096 and the 100M model's layer shapes at 4 rows
   * 0.55-0.83x the time, at 8 rows 0.57-0.70x; at 1 and 2 rows within noise (0.85-1.07x).
   */
  gemvShareXMinRows: number;
  /**
   * GEMV rows that read x as vec4s and do not share it (one row on the CPU profile): only
   * lane 0 of each subgroup loads x and subgroupBroadcast hands it to the rest, where the
   * adapter has subgroups. The address is the same in every lane, but lavapipe loads it in
   * a per-lane loop; process CPU time per 4096 x 4096 GEMV, alternating in one process
   * (2026-12-07): f32 0.88-0.95x, f16 0.85-0.88x. A GPU reads a shared address once anyway.
   */
  gemvXLane0: boolean;
  /** GEMM: rows per invocation (and per workgroup). */
  gemmRows: number;
  /** GEMM: column groups per invocation. */
  gemmCols4: number;
  /**
   * GEMM with at least gemmWideMinRows rows (prefill): column groups per invocation instead
   * of gemmCols4 (0 = always gemmCols4). Wider tiles read x for more columns per load but
   * leave fewer workgroups, which only a tall GEMM can spare: on lavapipe 16 x 4 ran the
   * 100M model's 512-row shapes 10-20% faster than 16 x 2 and its 16-row decode shapes
   * slower.
   */
  gemmWideCols4: number;
  gemmWideMinRows: number;
  /**
   * GEMM below gemmWideMinRows: take the wide tiles all the same where they still leave at
   * least this many workgroups (0 = never). On lavapipe a workgroup runs on one core, so a
   * 768-column projection in three wide workgroups leaves one core idle for a third of it,
   * while wide N = 4096 and 16384 (the 100M model's gate/up and LM head) at 16 rows took
   * 0.88-0.98x and 0.88-0.91x the CPU time of 16 x 2 tiles.
   */
  gemmWideMinWorkgroups: number;
  /** GEMM: columns per group, 4 (vec4 loads) or 1 (one column per lane). */
  gemmVecWidth: 1 | 4;
  /** GEMM: invocations per workgroup (all along N). */
  gemmWorkgroupN: number;
  /**
   * GEMM: k-steps that share one x load per row through subgroupBroadcast (0 = every lane
   * loads x itself each step). Used only where the adapter has subgroups of at least this
   * many lanes; otherwise the kernel falls back to 0.
   */
  gemmShareX: number;
  /**
   * GEMM: number workgroups row tile first, so that consecutive workgroups (the ones a CPU
   * core takes in turn) read the same block of W columns while it is still in its cache.
   */
  gemmRowsFirst: boolean;
  /**
   * GEMM, f16 weights with gemmVecWidth 4 and an even gemmCols4: each lane reads two adjacent
   * vec4 columns as one 16-byte vec4<u32> (see WPAIRS in shaders/matmul.wgsl).
   */
  gemmF16Pairs: boolean;
}

// CPU (lavapipe): every load in a loop is a scalarised per-lane gather with a bounds check
// (about 0.3 ns per lane element on the 2-core machine against 0.02 ns per lane multiply-add,
// measured 2026-11-29), so the tiling is chosen to load few elements per multiply-add: x is
// shared across a subgroup (each lane loads one x per row for 8 k steps, subgroupShuffle
// hands them round in a loop) and each W vec4 feeds 16 rows. At 1024^3 (paired with the FMA
// kernel) this took the GEMM from 27-28% to 36-52% f32 and 47-51% f16 of the FMA rate; the
// same sharing written as 8 straight-line steps (subgroupBroadcast) timed 11-33%.
const CPU_TUNING: MatmulTuning = {
  gemvMaxRows: GEMV_MAX_ROWS,
  gemvWorkgroupN: 64,
  gemvSplitK: 1,
  gemvF16PairsMaxRows: 8,
  gemvMinWorkgroups: 16,
  gemvShareXMinRows: 2,
  gemvXLane0: true,
  gemmRows: 16,
  gemmCols4: 2,
  gemmWideCols4: 4,
  gemmWideMinRows: 64,
  gemmWideMinWorkgroups: 16,
  gemmWorkgroupN: 16,
  gemmVecWidth: 4,
  gemmShareX: 8,
  gemmRowsFirst: true,
  gemmF16Pairs: true,
};
const GPU_TUNING: MatmulTuning = {
  gemvMaxRows: GEMV_MAX_ROWS,
  gemvWorkgroupN: 64,
  gemvSplitK: 4,
  gemvF16PairsMaxRows: 0,
  gemvMinWorkgroups: 1,
  gemvShareXMinRows: 0,
  gemvXLane0: false,
  gemmRows: 8,
  gemmCols4: 1,
  gemmWideCols4: 0,
  gemmWideMinRows: 0,
  gemmWideMinWorkgroups: 0,
  gemmWorkgroupN: 64,
  gemmVecWidth: 4,
  gemmShareX: 0,
  gemmRowsFirst: false,
  gemmF16Pairs: false,
};

/**
 * Tile overrides for a GEMM whose output has only a few dozen columns (LoRA's shrink to
 * segments x rank columns): the CPU profile's workgroups span 128-256 columns, so at N = 48
 * four fifths of their lanes computed clamped columns that are never written. One vec4
 * column group per lane in 8-lane workgroups, on lavapipe at 128 rows (GPU timestamps,
 * medians of 5, 2026-12-07): N 48 x K 768 1.37 -> 0.49 ms, N 16 x K 2048 3.52 -> 0.65 ms. The
 * GPU profile keeps its tiles (not measured on a GPU).
 */
export function narrowOutputTuning(rt: KernelRuntime): Partial<MatmulTuning> {
  return rt.ctx.kernelProfile === 'cpu' ? { gemmWorkgroupN: 8, gemmCols4: 1, gemmWideCols4: 1 } : {};
}

export function defaultMatmulTuning(rt: KernelRuntime): MatmulTuning {
  return rt.ctx.kernelProfile === 'cpu' ? CPU_TUNING : GPU_TUNING;
}

export interface MatmulArgs {
  /** f32 [M, K], row-major; may be a slice (any 4-byte aligned offset). */
  x: GpuTensor;
  weight: MatmulWeight;
  /** f32 [M, N], row-major; must not overlap x. */
  out: GpuTensor;
  M: number;
  /**
   * x holds an MLP's fused gate/up rows, f32 [M, 2K] ([gate | up] per row), and the
   * matmul's input is act(gate) * up, applied as x is loaded (SwiGLU / GeGLU without an
   * activation pass of its own).
   */
  gated?: Activation;
  /**
   * The matmul's input is RMSNorm(x) with this weight: the norm is applied as x is loaded
   * and each row's 1 / RMS scales its sums at the end (shaders/matmul-args.wgsl, NORMX), so
   * a norm whose output feeds only this matmul costs no dispatch and no [M, K] buffer.
   * Not with `gated`.
   */
  normX?: RmsNormFold;
  /** Add the result to what `out` holds (a residual stream updated in place) instead of overwriting it. */
  accumulate?: boolean;
  /** Overrides of the default tile sizes (benchmarks). */
  tuning?: Partial<MatmulTuning>;
}

/** An RMSNorm folded into a matmul's input: x * rsqrt(mean(x^2) + eps) * w (or * (1 + w)). */
export interface RmsNormFold {
  /** f32 [K]. */
  weight: GpuTensor;
  eps: number;
  /** The (1 + w) form (Gemma-style weights stored as offsets from 1). */
  onePlus: boolean;
}

/**
 * A binding that starts at the device's storage offset alignment (256 bytes in Dawn)
 * at or below the tensor's start, plus the tensor's element offset inside it, so that
 * callers may pass slices at any row.
 */
function alignedBinding(rt: KernelRuntime, t: GpuTensor, firstElement: number, elements: number): { binding: Binding; offset: number } {
  const align = rt.ctx.limits.minStorageBufferOffsetAlignment;
  const start = t.byteOffset + firstElement * 4;
  const base = start - (start % align);
  const size = start - base + elements * 4;
  return { binding: { buffer: t.buffer, offset: base, size }, offset: (start - base) / 4 };
}

function checkArgs(args: MatmulArgs): void {
  const { x, weight, out, M } = args;
  if (!Number.isInteger(M) || M < 0) throw new RangeError(`matmul: M must be a non-negative integer, got ${M}`);
  if (x.dtype !== 'f32' || out.dtype !== 'f32') throw new TypeError(`matmul: x and out must be f32, got ${x.dtype} and ${out.dtype}`);
  const ldx = args.gated ? 2 * weight.K : weight.K;
  if (x.length < M * ldx) throw new RangeError(`matmul: x has ${x.length} elements, [${M}, ${ldx}] needs ${M * ldx}`);
  if (out.length < M * weight.N) throw new RangeError(`matmul: out has ${out.length} elements, [${M}, ${weight.N}] needs ${M * weight.N}`);
  if (x.byteOffset % 4 !== 0 || out.byteOffset % 4 !== 0) throw new RangeError('matmul: x and out must start at a 4-byte boundary');
  const norm = args.normX;
  if (norm) {
    if (args.gated) throw new TypeError('matmul: normX and gated cannot be combined');
    if (norm.weight.dtype !== 'f32' || norm.weight.length < weight.K)
      throw new RangeError(
        `matmul: normX.weight must be f32 with at least K = ${weight.K} elements, got ${norm.weight.dtype} [${norm.weight.length}]`,
      );
    if (!(norm.eps >= 0)) throw new RangeError(`matmul: normX.eps must be a non-negative number, got ${norm.eps}`);
  }
}

export function matmul(rt: KernelRuntime, rec: Recorder, args: MatmulArgs): void {
  checkArgs(args);
  const { x, weight, out, M } = args;
  if (M === 0) return;
  const tuning = { ...defaultMatmulTuning(rt), ...args.tuning };
  // a caller that sets gemmCols4 alone (a sweep, a test) pins the width for every height
  if (args.tuning?.gemmCols4 !== undefined && args.tuning.gemmWideCols4 === undefined) tuning.gemmWideCols4 = 0;
  const { N, K } = weight;
  // elements per row of x: gated rows hold gate and up side by side
  const ldx = args.gated ? 2 * K : K;
  // x and out bindings must fit one binding too: a long prefill against a wide LM head is
  // run in row chunks (each chunk still covers all of N)
  const rowBytes = Math.max(ldx, N) * 4 + rt.ctx.limits.minStorageBufferOffsetAlignment;
  const chunkRows = Math.max(1, Math.min(M, Math.floor(rt.maxBindingBytes / rowBytes)));
  // the norm's sums over a subgroup's lanes need subgroupAdd; without subgroups each lane sums a whole row
  const fold: FoldDefines = {
    norm: args.normX,
    accumulate: args.accumulate ?? false,
    normSubgroups: !!args.normX && rt.ctx.features.subgroups === true,
  };
  for (let m0 = 0; m0 < M; m0 += chunkRows) {
    const rows = Math.min(chunkRows, M - m0);
    const xb = alignedBinding(rt, x, m0 * ldx, rows * ldx);
    const ob = alignedBinding(rt, out, m0 * N, rows * N);
    for (const part of weight.parts) {
      const p = params()
        .u32(K)
        .u32(part.n)
        .u32(part.ldw4)
        .u32(xb.offset)
        .u32(ldx)
        .u32(ob.offset)
        .u32(N)
        .u32(part.n0)
        .u32(rows)
        .f32(args.normX?.eps ?? 0);
      const bindings: Binding[] = [xb.binding, part.tensor];
      if (weight.bias) bindings.push(weight.bias);
      bindings.push(ob.binding);
      if (args.normX) bindings.push(args.normX.weight);
      const xVec4 = K % 4 === 0 && xb.offset % 4 === 0;
      const d: PartDispatch = { weight, part, rows, tuning, bindings, p, xVec4, gated: args.gated, fold };
      if (rows <= tuning.gemvMaxRows) dispatchGemv(rt, rec, d);
      else dispatchGemm(rt, rec, d);
    }
  }
}

interface PartDispatch {
  weight: MatmulWeight;
  gated: Activation | undefined;
  part: MatmulWeightPart;
  rows: number;
  tuning: MatmulTuning;
  bindings: Binding[];
  p: Params;
  /** x's rows start on 16-byte boundaries (K and the binding offset multiples of 4): the GEMVs may read x as vec4s. */
  xVec4: boolean;
  fold: FoldDefines;
}

/** What MatmulArgs.normX and accumulate make of a kernel (matmul-args.wgsl). */
interface FoldDefines {
  norm: RmsNormFold | undefined;
  accumulate: boolean;
  /** The rows' sums of squares are split across a subgroup's lanes (NORMSG). */
  normSubgroups: boolean;
}

function foldDefines(f: FoldDefines, bias: boolean): Defines {
  return {
    NORMX: f.norm !== undefined,
    NORM1P: f.norm?.onePlus ?? false,
    NORMV4: f.norm !== undefined && f.norm.weight.byteOffset % 16 === 0 && f.norm.weight.length % 4 === 0,
    NORMSG: f.normSubgroups,
    NORMLANES: normLanes(f) ?? '',
    // after x, W, bias and out
    NORMB: bias ? 4 : 3,
    ACCUM: f.accumulate,
  };
}

function commonDefines(d: PartDispatch): Record<string, string | number | boolean> {
  const { weight } = d;
  return {
    WT: weight.dtype,
    WF16: weight.dtype === 'f16',
    BIAS: weight.bias !== undefined,
    WB: WEIGHT_BLOCK_COLS4,
    GATED: d.gated ?? false,
    ACT: d.gated ?? '',
    ...foldDefines(d.fold, weight.bias !== undefined),
  };
}

function bindingKinds(d: PartDispatch): ('read' | 'write')[] {
  const kinds: ('read' | 'write')[] = d.weight.bias ? ['read', 'read', 'read', 'write'] : ['read', 'read', 'write'];
  if (d.fold.norm) kinds.push('read');
  return kinds;
}

/**
 * The GEMV's workgroup: `wgn` lanes along N, gemvWorkgroupN halved (not below 8) until
 * `lanes` give gemvMinWorkgroups workgroups, by `ks` along K (gemvSplitK). Both are then cut
 * to what the device allows: the split-K partial sums (one vec4 per lane, split and row)
 * must fit its workgroup memory and wgn * ks its invocations per workgroup. On a GPU
 * (64 x 4) at 8 rows the partials take 32 KiB, twice WebGPU's default 16 KiB.
 */
export function gemvShape(
  tuning: Pick<MatmulTuning, 'gemvWorkgroupN' | 'gemvSplitK' | 'gemvMinWorkgroups'>,
  lanes: number,
  rows: number,
  limits: Pick<GPUSupportedLimits, 'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup'>,
): { wgn: number; ks: number } {
  let wgn = tuning.gemvWorkgroupN;
  let ks = tuning.gemvSplitK;
  while (wgn > 8 && Math.ceil(lanes / wgn) < tuning.gemvMinWorkgroups) wgn /= 2;
  const fits = (): boolean =>
    wgn * ks <= limits.maxComputeInvocationsPerWorkgroup && (ks === 1 || wgn * ks * rows * 16 <= limits.maxComputeWorkgroupStorageSize);
  while (!fits()) {
    if (wgn > 8) wgn /= 2;
    else if (ks > 1) ks = Math.max(1, Math.floor(ks / 2));
    else break;
  }
  return { wgn, ks };
}

function gemvShareX(rt: KernelRuntime, d: PartDispatch): boolean {
  // a gated x load is two loads and an exp, so sharing it pays from one row (the down
  // projection of batch-1 decode: 0.76x the time of activation pass + GEMV on lavapipe)
  const from = d.gated && d.tuning.gemvShareXMinRows > 0 ? 1 : d.tuning.gemvShareXMinRows;
  return from > 0 && d.rows >= from && hasSubgroupsOf(rt, 8);
}

/**
 * How a GEMV with `ks` splits of K loads x: XSHARE, shared across the subgroup; XLANE0, a
 * vec4 loaded in lane 0 only (MatmulTuning.gemvXLane0); SID when either, for the kernel to
 * take its subgroup lane and keep its k loop subgroup-uniform (both need KS = 1).
 */
function gemvXDefines(rt: KernelRuntime, d: PartDispatch, ks: number): { XSHARE: boolean; XLANE0: boolean; SID: boolean } {
  const xshare = ks === 1 && gemvShareX(rt, d);
  const xlane0 = d.tuning.gemvXLane0 && ks === 1 && d.xVec4 && !xshare && rt.ctx.features.subgroups === true;
  return { XSHARE: xshare, XLANE0: xlane0, SID: xshare || xlane0 || d.fold.normSubgroups };
}

function dispatchGemv(rt: KernelRuntime, rec: Recorder, d: PartDispatch): void {
  if (d.weight.dtype === 'int8') return dispatchGemvI8(rt, rec, d);
  const pairs = d.weight.dtype === 'f16' && d.tuning.gemvSplitK === 1 && d.rows <= d.tuning.gemvF16PairsMaxRows && d.part.ldw4 % 2 === 0;
  const { wgn, ks } = gemvShape(d.tuning, pairs ? d.part.ldw4 / 2 : d.part.ldw4, d.rows, rt.ctx.limits);
  if (pairs) {
    // eight columns per invocation from one 16-byte load (see gemv-f16x8.wgsl)
    const kernel = rt.kernel({
      shader: 'gemv-f16x8',
      defines: { ...commonDefines(d), TM: d.rows, WGN: wgn, XV4: d.xVec4, ...gemvXDefines(rt, d, 1) },
      bindings: bindingKinds(d),
      params: true,
    });
    rec.dispatch(kernel, d.bindings, d.p, [Math.ceil(d.part.ldw4 / 2 / wgn), 1]);
    return;
  }
  const kernel = rt.kernel({
    shader: 'gemv',
    defines: {
      ...commonDefines(d),
      TM: d.rows,
      WGN: wgn,
      KS: ks,
      SPLITK: ks > 1,
      PARTIALS: wgn * ks * d.rows,
      XV4: ks === 1 && d.xVec4,
      ...gemvXDefines(rt, d, ks),
    },
    bindings: bindingKinds(d),
    params: true,
  });
  rec.dispatch(kernel, d.bindings, d.p, [Math.ceil(d.part.ldw4 / wgn), 1]);
}

/**
 * The x-sharing width the adapter allows: subgroupBroadcast needs the subgroups feature
 * and at least `want` lanes in every subgroup (lavapipe: 8).
 */
export function supportedShareX(rt: KernelRuntime, want: number): number {
  return want > 1 && hasSubgroupsOf(rt, want) ? want : 0;
}

/** The GEMM's column groups per invocation: gemmCols4, or gemmWideCols4 where the tuning takes the wide tiles. */
function gemmTileCols(d: PartDispatch, vw: number): number {
  const { gemmRows: tm, gemmWorkgroupN: wgn } = d.tuning;
  const wideGroups = Math.ceil((d.part.ldw4 * (4 / vw)) / (wgn * d.tuning.gemmWideCols4)) * Math.ceil(d.rows / tm);
  const wide =
    d.tuning.gemmWideCols4 > 0 &&
    (d.rows >= d.tuning.gemmWideMinRows || (d.tuning.gemmWideMinWorkgroups > 0 && wideGroups >= d.tuning.gemmWideMinWorkgroups));
  return wide ? d.tuning.gemmWideCols4 : d.tuning.gemmCols4;
}

function dispatchGemm(rt: KernelRuntime, rec: Recorder, d: PartDispatch): void {
  if (d.weight.dtype === 'int8') return dispatchGemmI8(rt, rec, d);
  const { gemmRows: tm, gemmWorkgroupN: wgn, gemmVecWidth: vw } = d.tuning;
  const tn4 = gemmTileCols(d, vw);
  const xs = supportedShareX(rt, d.tuning.gemmShareX);
  const rowsFirst = d.tuning.gemmRowsFirst;
  const wt = d.weight.dtype;
  const pairs = wt === 'f16' && vw === 4 && tn4 % 2 === 0 && d.part.ldw4 % 2 === 0 && d.tuning.gemmF16Pairs;
  const kernel = rt.kernel({
    shader: 'matmul',
    defines: {
      ...commonDefines(d),
      TM: tm,
      TN: tn4,
      WGN: wgn,
      WPAIRS: pairs,
      CU: pairs ? tn4 / 2 : tn4,
      XSHARE: xs > 0,
      SID: xs > 0 || d.fold.normSubgroups,
      XS: Math.max(xs, 1),
      ROWSFIRST: rowsFirst,
      VW: vw,
      VEC4: vw === 4,
      ACC: vw === 4 ? 'vec4<f32>' : 'f32',
      WELEM: pairs ? 'vec4<u32>' : vw === 4 ? `vec4<${wt}>` : wt,
    },
    generated: () => gemmBlockCode(tm, tn4, xs, pairs, normLanes(d.fold)),
    bindings: bindingKinds(d),
    params: true,
  });
  const groups = Math.ceil((d.part.ldw4 * (4 / vw)) / (wgn * tn4));
  const rowTiles = Math.ceil(d.rows / tm);
  rec.dispatch(kernel, d.bindings, d.p, rowsFirst ? [rowTiles, groups] : [groups, rowTiles]);
}

/**
 * The GEMM's register block as straight-line WGSL: TM x TN named accumulators, the loads
 * and multiply-adds of one k step, a loop of xs k steps with x shared through
 * subgroupShuffle (when xs > 0), and the stores; with `pairs` each W load is one vec4<u32>
 * holding two adjacent f16 vec4 columns (see the comments in shaders/matmul.wgsl).
 */
export function gemmBlockCode(
  tm: number,
  tn: number,
  xs = 0,
  pairs = false,
  normLanes?: string,
): { DECL: string; STEP: string; CHUNK: string; STORE: string } {
  const decl: string[] = [];
  const step: string[] = [];
  const chunk: string[] = [];
  const store: string[] = [];
  // W loads: one per column group, or with pairs one 16-byte load per two adjacent groups
  const loads = pairs ? tn / 2 : tn;
  const norm = gemmNorm(tm, xs, normLanes);
  // one k step: the W loads of every column group, then each row's x times each of them
  const kStep = (out: string[], xOf: (r: number) => string, pre: (r: number) => string[] = () => []): void => {
    for (let j = 0; j < loads; j++) {
      if (pairs) out.push(`    let q_${j} = w[wi_${j}];`, `    let w_${2 * j} = lo(q_${j});`, `    let w_${2 * j + 1} = hi(q_${j});`);
      else out.push(`    let w_${j} = Acc(w[wi_${j}]);`);
      out.push(`    wi_${j} += bw_${j};`);
    }
    for (let r = 0; r < tm; r++) {
      out.push(...pre(r).map((l) => `    ${l}`), `    let x_${r} = ${xOf(r)};`);
      for (let j = 0; j < tn; j++) out.push(`    a_${r}_${j} += w_${j} * x_${r};`);
    }
  };
  if (xs > 0) {
    // lane l holds x[row, k + l]; step s takes lane s's value
    chunk.push('    let ng = normAt(k + xLane);');
    for (let r = 0; r < tm; r++) chunk.push(...norm.sharedX(r).map((l) => `    ${l}`));
    chunk.push(`    for (var s = 0u; s < ${xs}u; s++) {`);
    kStep(chunk, (r) => `subgroupShuffle(xs_${r}, s)`);
    chunk.push('    }');
  }
  for (let j = 0; j < loads; j++) {
    // load j's index in W at k = 0 and its step per k (wColumn, shaders/matmul-args.wgsl);
    // pairs: in vec4<u32> units, half the vec4<f16> ones (block widths are even)
    if (pairs) {
      decl.push(`  let at_${j} = wColumn(2u * min(c0 + ${j}u * WGN, ldw / 2u - 1u), ldw, WBE);`);
      decl.push(`  var wi_${j} = at_${j}.x / 2u;`);
      decl.push(`  let bw_${j} = at_${j}.y / 2u;`);
    } else {
      decl.push(`  let at_${j} = wColumn(min(c0 + ${j}u * WGN, ldw - 1u), ldw, WBE);`);
      decl.push(`  var wi_${j} = at_${j}.x;`);
      decl.push(`  let bw_${j} = at_${j}.y;`);
    }
  }
  for (let r = 0; r < tm; r++) decl.push(`  let xRow_${r} = p.xOff + min(m0 + ${r}u, lastRow) * p.ldx;`);
  decl.push(...norm.decl);
  for (let r = 0; r < tm; r++) for (let j = 0; j < tn; j++) decl.push(`  var a_${r}_${j} = Acc(0.0);`);
  kStep(
    step,
    (r) => norm.stepX(r, 'k'),
    (r) => norm.stepPre(r, 'k'),
  );
  // the vec4 column of accumulator j: group j, or half j % 2 of pair j / 2
  const column = (j: number): string => (pairs ? `2u * (c0 + ${Math.floor(j / 2)}u * WGN) + ${j % 2}u` : `c0 + ${j}u * WGN`);
  store.push(...norm.storePre);
  for (let r = 0; r < tm; r++) for (let j = 0; j < tn; j++) store.push(`  store(m0 + ${r}u, ${column(j)}, ${scaled(r, j, normLanes)});`);
  return { DECL: decl.join('\n'), STEP: step.join('\n'), CHUNK: chunk.join('\n'), STORE: store.join('\n') };
}

/** NORMX's lanes for rowInvRms in a GEMM (its subgroup's, or each lane on its own), or undefined without a folded norm. */
function normLanes(f: FoldDefines): string | undefined {
  if (!f.norm) return undefined;
  return f.normSubgroups ? 'sid, sgs' : '0u, 1u';
}

/**
 * How a GEMM block (gemmBlockCode, gemmBlockCodeI8) gets its rows' 1 / RMS with NORMX, as
 * WGSL lines: without shared x, a prologue pass over its rows (rowInvRms); with shared x
 * (xs > 0: subgroups, lane l loads x[row, k + l % xs] in every chunk) the squares of the raw
 * values the lanes load anyway are summed in the loop (lanes past xs repeat lanes below it;
 * in the tail steps every lane loads the same value, so lane 0 alone counts it) and
 * subgroupAdd totals them before the stores: no second pass over the rows. Without NORMX
 * the lines are the plain loads.
 */
function gemmNorm(
  tm: number,
  xs: number,
  normLanes: string | undefined,
): {
  decl: string[];
  /** Row r's shared x for this chunk, `xs_r` (the chunk has declared `ng = normAt(k + xLane)`). */
  sharedX(r: number): string[];
  /** Lines before a tail step's x of row r at k = `k`, and that x. */
  stepPre(r: number, k: string): string[];
  stepX(r: number, k: string): string;
  storePre: string[];
} {
  const rows = Array.from({ length: tm }, (_, r) => r);
  const plain = {
    sharedX: (r: number) => [`let xs_${r} = xAtWith(xRow_${r}, k + xLane, ng);`],
    stepPre: () => [],
    stepX: (r: number, k: string) => `xAt(xRow_${r}, ${k})`,
  };
  if (normLanes === undefined) return { decl: [], ...plain, storePre: [] };
  if (xs === 0) return { decl: rows.map((r) => `  let inv_${r} = rowInvRms(xRow_${r}, ${normLanes});`), ...plain, storePre: [] };
  return {
    decl: rows.map((r) => `  var ss_${r} = 0.0;`),
    sharedX: (r) => [
      `let xr_${r} = xRaw(xRow_${r} + k + xLane);`,
      `ss_${r} += select(0.0, xr_${r} * xr_${r}, sid < XS);`,
      `let xs_${r} = xr_${r} * ng;`,
    ],
    stepPre: (r, k) => [`let xt_${r} = xRaw(xRow_${r} + ${k});`, `ss_${r} += select(0.0, xt_${r} * xt_${r}, sid == 0u);`],
    stepX: (r, k) => `xt_${r} * normScale(${k})`,
    storePre: rows.map((r) => `  let inv_${r} = inverseSqrt(subgroupAdd(ss_${r}) / f32(p.K) + p.eps);`),
  };
}

// accumulator (r, j) as stored: scaled by its row's 1 / RMS with NORMX
function scaled(r: number, j: number, normLanes: string | undefined): string {
  return normLanes === undefined ? `a_${r}_${j}` : `a_${r}_${j} * inv_${r}`;
}

/**
 * The int8 GEMV (gemv-i8.wgsl): the workgroup shape of gemv.wgsl; K is split by scale
 * groups, so x is read as vec4s (XV4) with or without a split. x is shared across the
 * subgroup from one row wherever gemvShareXMinRows enables sharing at all: each x load
 * feeds one 16-byte W load here, not four, so it is a larger share of the loads (on
 * lavapipe, 1 x 4096 x 4096: 0.64x the CPU time of the f16 GEMV shared, 0.74x unshared).
 */
function dispatchGemvI8(rt: KernelRuntime, rec: Recorder, d: PartDispatch): void {
  const { wgn, ks } = gemvShape(d.tuning, d.part.ldw4, d.rows, rt.ctx.limits);
  const xshare = ks === 1 && d.tuning.gemvShareXMinRows > 0 && hasSubgroupsOf(rt, 8);
  const kernel = rt.kernel({
    shader: 'gemv-i8',
    defines: {
      ...commonDefines(d),
      GS: d.weight.groupSize!,
      TM: d.rows,
      WGN: wgn,
      KS: ks,
      SPLITK: ks > 1,
      PARTIALS: wgn * ks * d.rows,
      XV4: d.xVec4,
      XSHARE: xshare,
      SID: xshare || d.fold.normSubgroups,
    },
    bindings: bindingKinds(d),
    params: true,
  });
  rec.dispatch(kernel, d.bindings, d.p, [Math.ceil(d.part.ldw4 / wgn), 1]);
}

/**
 * The int8 GEMM (matmul-i8.wgsl): the f32 GEMM's tiles, always vec4 columns (four int8 to
 * a word); x is shared over XS k steps where XS is a multiple of 4 that divides the group.
 */
function dispatchGemmI8(rt: KernelRuntime, rec: Recorder, d: PartDispatch): void {
  const { gemmRows: tm, gemmWorkgroupN: wgn, gemmRowsFirst: rowsFirst } = d.tuning;
  const tn4 = gemmTileCols(d, 4);
  const groupSize = d.weight.groupSize!;
  const want = supportedShareX(rt, d.tuning.gemmShareX);
  const xs = want % 4 === 0 && groupSize % want === 0 ? want : 0;
  const kernel = rt.kernel({
    shader: 'matmul-i8',
    defines: {
      ...commonDefines(d),
      GS: groupSize,
      TM: tm,
      TN: tn4,
      WGN: wgn,
      XSHARE: xs > 0,
      SID: xs > 0 || d.fold.normSubgroups,
      XS: Math.max(xs, 1),
      ROWSFIRST: rowsFirst,
    },
    generated: () => gemmBlockCodeI8(tm, tn4, xs, normLanes(d.fold)),
    bindings: bindingKinds(d),
    params: true,
  });
  const groups = Math.ceil(d.part.ldw4 / (wgn * tn4));
  const rowTiles = Math.ceil(d.rows / tm);
  rec.dispatch(kernel, d.bindings, d.p, rowsFirst ? [rowTiles, groups] : [groups, rowTiles]);
}

/**
 * matmul-i8.wgsl's register block as straight-line WGSL (named registers, as gemmBlockCode):
 * DECL (W and scale indices per column group, x rows, accumulators), SCALES (a group's
 * scales), CHUNK (xs k steps, x shared through subgroupShuffle), QUAD (the first `n` k steps
 * of a quad) and STORE. Each k step loads one word (its k step of four columns) per column
 * group, a scalar at the word's index inside the quad. On lavapipe (128 x 4096 x 4096, CPU
 * time against the f16 GEMM in the same process) that took 1.1-1.25x f16's, against
 * 1.4-1.6x for one 16-byte load per quad unpacked in an inner loop over its four steps and
 * 1.7x with those steps written out: the per-lane indexing of the loaded vec4 (or the
 * longer body) cost more than the loads it saved. Reading the words through an array<u32>
 * binding made no difference.
 */
export function gemmBlockCodeI8(
  tm: number,
  tn: number,
  xs = 0,
  normLanes?: string,
): { DECL: string; SCALES: string; CHUNK: string; QUAD: string; STORE: string } {
  const decl: string[] = [];
  const scales: string[] = [];
  const store: string[] = [];
  for (let j = 0; j < tn; j++) {
    decl.push(`  let cl_${j} = min(c0 + ${j}u * WGN, ldw - 1u);`);
    decl.push(`  let at_${j} = blockColumn(cl_${j}, ldw, K4);`);
    decl.push(`  var wi_${j} = at_${j}.x;`);
    decl.push(`  let bw_${j} = at_${j}.y;`);
    decl.push(`  let sc_${j} = blockColumn(cl_${j}, ldw, G);`);
    decl.push(`  var si_${j} = sOff + sc_${j}.x;`);
    decl.push(`  let sb_${j} = sc_${j}.y;`);
    scales.push(`    let s_${j} = scaleAt(si_${j});`, `    si_${j} += sb_${j};`);
  }
  for (let r = 0; r < tm; r++) decl.push(`  let xRow_${r} = p.xOff + min(m0 + ${r}u, lastRow) * p.ldx;`);
  const norm = gemmNorm(tm, xs, normLanes);
  decl.push(...norm.decl);
  for (let r = 0; r < tm; r++) for (let j = 0; j < tn; j++) decl.push(`  var a_${r}_${j} = vec4<f32>(0.0);`);
  // k steps t < bound from the quad at wi_j on, x from xOf(r); then wi_j past `quads` quads
  const steps = (bound: string, quads: number, xOf: (r: number) => string, pre: (r: number) => string[] = () => []): string[] => {
    const out = [`      for (var t = 0u; t < ${bound}; t++) {`];
    for (let j = 0; j < tn; j++) out.push(`        let w_${j} = i8x4(w[wi_${j} + (t >> 2u) * bw_${j}][t & 3u]) * s_${j};`);
    for (let r = 0; r < tm; r++) {
      out.push(...pre(r).map((l) => `        ${l}`), `        let x_${r} = ${xOf(r)};`);
      for (let j = 0; j < tn; j++) out.push(`        a_${r}_${j} += w_${j} * x_${r};`);
    }
    out.push('      }');
    for (let j = 0; j < tn; j++) out.push(`      wi_${j} += ${quads === 1 ? '' : `${quads}u * `}bw_${j};`);
    return out;
  };
  const chunk: string[] = [];
  if (xs > 0) {
    // lane l holds x[row, k + l]; step t takes lane t's value
    chunk.push('      let ng = normAt(k + xLane);');
    for (let r = 0; r < tm; r++) chunk.push(...norm.sharedX(r).map((l) => `      ${l}`));
    chunk.push(...steps(`${xs}u`, xs / 4, (r) => `subgroupShuffle(xs_${r}, t)`));
  }
  const quad = steps(
    'n',
    1,
    (r) => norm.stepX(r, 'k + t'),
    (r) => norm.stepPre(r, 'k + t'),
  );
  store.push(...norm.storePre);
  for (let r = 0; r < tm; r++)
    for (let j = 0; j < tn; j++) store.push(`  store(m0 + ${r}u, c0 + ${j}u * WGN, ${scaled(r, j, normLanes)});`);
  return { DECL: decl.join('\n'), SCALES: scales.join('\n'), CHUNK: chunk.join('\n'), QUAD: quad.join('\n'), STORE: store.join('\n') };
}
