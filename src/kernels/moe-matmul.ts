/**
 * The expert matmul of a mixture-of-experts layer (Qwen3-MoE style): each token was routed
 * to topK experts, and each (token, slot) pair multiplies by its own expert's [N, K] weight.
 *
 * 'expand' (an MLP's fused gate/up projection): x f32 [rows, K] -> out f32 [rows * topK, N],
 * out[r * topK + s] = W_{ids[r * topK + s]} x[r].
 * 'combine' (the down projection): x f32 [rows * topK, K], each pair's own activated row ->
 * out f32 [rows, N], out[r] (+)= sum_s routeWeights[r * topK + s] * W_{ids[..]} x[r * topK + s].
 *
 * The experts keep the safetensors layout ([N, K] row-major, no re-layout at load) and are
 * split into parts that each fit one storage binding; each part is one dispatch (see
 * shaders/moe-matmul.wgsl). An id outside [0, experts) acts as an expert of zeros: expand
 * writes a zero row for it, combine leaves it out of the sum; it never reads out of bounds.
 *
 * moeMatmulGrouped is the same product over pairs grouped by expert (moe-group.ts), so that
 * an expert shared by several pairs is read once per chunk of them; 'combine' is then
 * moeMatmulGrouped over each pair's own row followed by moeWeightedSum (moe-sum.ts).
 *
 * int8 experts (int8-quant.ts: symmetric, one f32 scale per row n and group of groupSize k)
 * take about half f16's bytes (+6% of scales at groups of 64), so that a Qwen3-30B-A3B fits
 * a 40 GB GPU. A part is one u32 buffer: the int8 values of its experts, [count][N][K / 4]
 * words of four k each (k = 4j + b in byte b: the [N, K] row-major bytes as they are),
 * then their scales, [count][N][G] f32 with G = ceil(K / groupSize) (the last group
 * shorter when groupSize does not divide K). The whole part, scales included, fits one
 * binding, so the kernels keep their bindings.
 */
import { AutoGlmError } from '../errors.js';
import { assertF32, assertNoOverlap, assertPositiveInt, assertU32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { allocateQuantized, checkGroupSize, int8Groups, INT8_GROUP_SIZE, quantizeInt8Into, type QuantizedInt8 } from './int8-quant.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import { assertBindingsApart, bindSlice } from './slice-binding.js';
import { hasSubgroupsOf } from './subgroups.js';
import type { KernelRuntime } from './runtime.js';
import { DTYPE_BYTES, type GpuTensor } from './tensor.js';

/** Invocations per workgroup, each computing four adjacent output columns (see the shader). */
const WORKGROUP_LANES = 64;
const COLUMNS_PER_LANE = 4;

export type MoeExpertDType = 'f32' | 'f16' | 'int8';

export interface MoeExpertWeight {
  experts: number;
  N: number;
  K: number;
  dtype: MoeExpertDType;
  /** int8: k per scale. */
  groupSize?: number;
  /**
   * Experts split into parts whose buffers each fit one storage binding (maxStorageBufferBindingSize,
   * or maxPartBytes). int8: a u32 tensor of the values and then the scales (see the file comment).
   */
  parts: { tensor: GpuTensor; firstExpert: number; count: number }[];
  /** Bytes of all parts. */
  bytes: number;
  destroy(): void;
}

/** One expert's [N, K] row-major values: f32 values, IEEE half bits for 'f16', or (int8 only) quantized ones. */
export type MoeExpertData = Float32Array | Uint16Array | QuantizedInt8;

export interface MoeExpertsInit<D = MoeExpertData> {
  experts: number;
  N: number;
  K: number;
  dtype: MoeExpertDType;
  /**
   * Expert e's [N, K] row-major values: f32 values for dtype 'f32', IEEE half bits
   * (Uint16Array) for 'f16'; for 'int8', f32 values (quantized here with quantizeInt8Into)
   * or a QuantizedInt8 of the same groupSize. Called once per expert, in order, so a
   * loader can read one expert at a time (int8 from f32 holds one more expert's int8
   * values, reused). It may return a promise (an async file read): prepareMoeExperts then
   * returns one too.
   */
  expertData: (e: number) => D;
  /** int8: k per scale (default INT8_GROUP_SIZE), a multiple of 8 (int8-quant.ts checkGroupSize). */
  groupSize?: number;
  /** Tests: a smaller cap than the device's binding limit, to exercise several parts. */
  maxPartBytes?: number;
  label?: string;
}

/** The kernel reads W and x as vec4s along K. */
function assertKMultipleOf4(op: string, K: number): void {
  if (K % 4 !== 0) throw new RangeError(`${op}: K must be a multiple of 4 (W and x are read as vec4s), got ${K}`);
}

/**
 * Writes experts one at a time straight into their part's buffer, so a loader never holds
 * more than one expert on the host; a part (as many whole experts as fit one binding) is
 * allocated when its first expert arrives.
 */
class ExpertUpload {
  private readonly op = 'prepareMoeExperts';
  private readonly parts: MoeExpertWeight['parts'] = [];
  private readonly expertElements: number;
  /** Bytes of one expert in a part (int8: values and scales). */
  private readonly expertBytes: number;
  private readonly perPart: number;
  /** int8: k per scale, and the buffer f32 experts are quantized into (allocated at the first). */
  private readonly groupSize?: number;
  private scratch?: QuantizedInt8;

  constructor(
    private readonly rt: KernelRuntime,
    private readonly o: MoeExpertsInit<unknown>,
  ) {
    assertPositiveInt(this.op, { experts: o.experts, N: o.N, K: o.K });
    assertKMultipleOf4(this.op, o.K);
    if (o.dtype !== 'f32' && o.dtype !== 'f16' && o.dtype !== 'int8') {
      throw new TypeError(`${this.op}: dtype must be 'f32', 'f16' or 'int8', got ${String(o.dtype)}`);
    }
    this.expertElements = o.N * o.K;
    if (o.dtype === 'int8') {
      this.groupSize = o.groupSize ?? INT8_GROUP_SIZE;
      checkGroupSize(this.groupSize);
      this.expertBytes = this.expertElements + 4 * o.N * int8Groups(o.K, this.groupSize);
    } else {
      if (o.groupSize !== undefined) throw new TypeError(`${this.op}: groupSize applies to dtype 'int8' only`);
      this.expertBytes = this.expertElements * DTYPE_BYTES[o.dtype];
    }
    const maxPartBytes = Math.min(o.maxPartBytes ?? rt.maxBindingBytes, rt.maxBindingBytes);
    this.perPart = Math.min(Math.floor(maxPartBytes / this.expertBytes), o.experts);
    if (this.perPart < 1) {
      throw new AutoGlmError(
        'gpu_out_of_memory',
        `${this.op}: one ${o.dtype} expert of [${o.N}, ${o.K}] is ${this.expertBytes} bytes, more than one storage binding holds (${maxPartBytes} bytes)`,
      );
    }
  }

  /** Expert e's data; experts arrive in order. */
  put(e: number, data: unknown): void {
    const { o } = this;
    if (o.dtype === 'int8') {
      const q = this.quantized(e, data);
      const part = this.partOf(e);
      const local = e - part.firstExpert;
      const words = (o.N * o.K) / 4;
      const G = int8Groups(o.K, this.groupSize!);
      // the [N, K] bytes are the words as they are (k = 4j + b in byte b of word j)
      this.rt.write(part.tensor, new Uint8Array(q.q.buffer, q.q.byteOffset, o.N * o.K), local * words);
      this.rt.write(part.tensor, q.scales, part.count * words + local * o.N * G);
      return;
    }
    this.checkFloat(e, data);
    const part = this.partOf(e);
    this.rt.write(part.tensor, data, (e - part.firstExpert) * this.expertElements);
  }

  /** Expert e's f32 data quantized into the scratch buffer, or its QuantizedInt8 checked. */
  private quantized(e: number, data: unknown): QuantizedInt8 {
    const { o, op } = this;
    const G = int8Groups(o.K, this.groupSize!);
    if (data instanceof Float32Array) {
      if (data.length !== this.expertElements) {
        throw new RangeError(`${op}: expert ${e} has ${data.length} elements, [${o.N}, ${o.K}] needs ${this.expertElements}`);
      }
      this.scratch ??= allocateQuantized(o.N, o.K, this.groupSize!);
      quantizeInt8Into(data, o.N, o.K, this.scratch, 0, `${o.label ?? 'moe-experts'}[${e}]`);
      return this.scratch;
    }
    if (!isQuantized(data)) throw new TypeError(`${op}: expert ${e} of dtype int8 must be a Float32Array or a QuantizedInt8`);
    if (data.groupSize !== this.groupSize) {
      throw new RangeError(`${op}: expert ${e} is quantized in groups of ${data.groupSize}, the weight's groupSize is ${this.groupSize}`);
    }
    if (data.q.length !== this.expertElements || data.scales.length !== o.N * G) {
      throw new RangeError(
        `${op}: expert ${e} has ${data.q.length} values and ${data.scales.length} scales, [${o.N}, ${o.K}] needs ${this.expertElements} and ${o.N * G}`,
      );
    }
    return data;
  }

  private checkFloat(e: number, data: unknown): asserts data is Float32Array | Uint16Array {
    const { o, op } = this;
    const want = o.dtype === 'f16' ? Uint16Array : Float32Array;
    if (!(data instanceof want)) {
      throw new TypeError(
        `${op}: expert ${e} of dtype ${o.dtype} must be a ${o.dtype === 'f16' ? 'Uint16Array of f16 bits' : 'Float32Array'}`,
      );
    }
    if (data.length !== this.expertElements) {
      throw new RangeError(`${op}: expert ${e} has ${data.length} elements, [${o.N}, ${o.K}] needs ${this.expertElements}`);
    }
  }

  /** Expert e's part, allocated when its first expert arrives. */
  private partOf(e: number): MoeExpertWeight['parts'][number] {
    const { o } = this;
    if (e % this.perPart === 0) {
      const count = Math.min(this.perPart, o.experts - e);
      const label = `${o.label ?? 'moe-experts'}[${e}:${e + count}]`;
      const tensor =
        o.dtype === 'int8'
          ? this.rt.tensor('u32', (count * this.expertBytes) / 4, label)
          : this.rt.tensor(o.dtype, count * this.expertElements, label);
      this.parts.push({ tensor, firstExpert: e, count });
    }
    return this.parts[this.parts.length - 1]!;
  }

  finish(): MoeExpertWeight {
    const { rt, o, parts } = this;
    let destroyed = false;
    return {
      experts: o.experts,
      N: o.N,
      K: o.K,
      dtype: o.dtype,
      groupSize: this.groupSize,
      parts,
      bytes: o.experts * this.expertBytes,
      destroy() {
        if (destroyed) return;
        destroyed = true;
        for (const p of parts) rt.destroyBuffer(p.tensor.buffer);
      },
    };
  }

  /** Frees the parts written so far (a failed load). */
  abort(): void {
    for (const p of this.parts) this.rt.destroyBuffer(p.tensor.buffer);
  }
}

/**
 * Uploads the experts in parts of whole experts that each fit one storage binding, one
 * expert at a time (see ExpertUpload). Synchronous for a synchronous expertData; with one
 * that returns promises, it awaits each expert in turn and returns a promise.
 */
export function prepareMoeExperts(rt: KernelRuntime, o: MoeExpertsInit): MoeExpertWeight;
export function prepareMoeExperts(rt: KernelRuntime, o: MoeExpertsInit<Promise<MoeExpertData>>): Promise<MoeExpertWeight>;
export function prepareMoeExperts(
  rt: KernelRuntime,
  o: MoeExpertsInit<MoeExpertData | Promise<MoeExpertData>>,
): MoeExpertWeight | Promise<MoeExpertWeight> {
  const upload = new ExpertUpload(rt, o);
  try {
    for (let e = 0; e < o.experts; e++) {
      const data = o.expertData(e);
      if (data instanceof Promise) return uploadRestAsync(upload, o, e, data);
      upload.put(e, data);
    }
  } catch (err) {
    upload.abort();
    throw err;
  }
  return upload.finish();
}

function isQuantized(data: unknown): data is QuantizedInt8 {
  const q = data as Partial<QuantizedInt8> | null;
  return typeof q === 'object' && q !== null && q.q instanceof Int8Array && q.scales instanceof Float32Array;
}

async function uploadRestAsync(
  upload: ExpertUpload,
  o: MoeExpertsInit<MoeExpertData | Promise<MoeExpertData>>,
  first: number,
  pending: Promise<MoeExpertData>,
): Promise<MoeExpertWeight> {
  try {
    upload.put(first, await pending);
    for (let e = first + 1; e < o.experts; e++) upload.put(e, await o.expertData(e));
    return upload.finish();
  } catch (err) {
    upload.abort();
    throw err;
  }
}

export interface MoeMatmulOptions {
  mode: 'expand' | 'combine';
  /** f32 [rows, K] (expand) or [rows * topK, K] (combine); starts at a 16-byte boundary. */
  x: GpuTensor;
  weight: MoeExpertWeight;
  /** u32 [rows * topK]: slot s of row r at r * topK + s. */
  ids: GpuTensor;
  /** f32 [rows * topK], required for 'combine'. */
  routeWeights?: GpuTensor;
  /** f32 [rows * topK, N] (expand) or [rows, N] (combine); must not overlap the inputs. */
  out: GpuTensor;
  rows: number;
  topK: number;
  /** 'combine' only: add to what out holds (a residual stream updated in place) instead of overwriting it. */
  accumulate?: boolean;
}

/** The shaders' defines for the weight's dtype: one of WF32, WF16 (halves in u32 words) and INT8 (with GS k per scale). */
function weightDefines(w: MoeExpertWeight): { WF32: boolean; WF16: boolean; INT8: boolean; GS: number } {
  if (w.dtype === 'int8') {
    checkGroupSize(w.groupSize ?? NaN);
    return { WF32: false, WF16: false, INT8: true, GS: w.groupSize! };
  }
  return { WF32: w.dtype === 'f32', WF16: w.dtype === 'f16', INT8: false, GS: 0 };
}

/** int8: the word where a part's scales start, after its [count][N][K / 4] words of values; 0 otherwise. */
function scalesOffset(w: MoeExpertWeight, part: MoeExpertWeight['parts'][number]): number {
  return w.dtype === 'int8' ? (part.count * w.N * w.K) / 4 : 0;
}

function checkArgs(o: MoeMatmulOptions): void {
  const op = 'moeMatmul';
  const { weight: w, rows, topK } = o;
  if (o.mode !== 'expand' && o.mode !== 'combine') throw new TypeError(`${op}: mode must be 'expand' or 'combine', got ${String(o.mode)}`);
  assertPositiveInt(op, { rows, topK });
  assertKMultipleOf4(op, w.K);
  assertF32(op, o.x, o.out);
  assertU32(op, 'ids', o.ids);
  const pairs = rows * topK;
  const combine = o.mode === 'combine';
  assertLength(op, 'x', o.x, (combine ? pairs : rows) * w.K);
  assertLength(op, 'ids', o.ids, pairs);
  assertLength(op, 'out', o.out, (combine ? rows : pairs) * w.N);
  assertNoOverlap(op, ['x', 'out'], o.x, o.out);
  assertNoOverlap(op, ['ids', 'out'], o.ids, o.out);
  if (combine) {
    if (!o.routeWeights) throw new TypeError(`${op}: 'combine' needs routeWeights (f32 [rows * topK])`);
    assertF32(op, o.routeWeights);
    assertLength(op, 'routeWeights', o.routeWeights, pairs);
    assertNoOverlap(op, ['routeWeights', 'out'], o.routeWeights, o.out);
  } else if (o.accumulate) {
    throw new TypeError(`${op}: accumulate applies to 'combine' only`);
  }
}

/** Records one dispatch per expert part (see the file comment). */
export function moeMatmul(rt: KernelRuntime, rec: Recorder, o: MoeMatmulOptions): void {
  const op = 'moeMatmul';
  checkArgs(o);
  const { weight: w, rows, topK } = o;
  const combine = o.mode === 'combine';
  const pairs = rows * topK;
  const x = bindSlice(rt, op, 'x', o.x, (combine ? pairs : rows) * w.K, 16);
  const ids = bindSlice(rt, op, 'ids', o.ids, pairs);
  const out = bindSlice(rt, op, 'out', o.out, (combine ? rows : pairs) * w.N);
  const rw = combine ? bindSlice(rt, op, 'routeWeights', o.routeWeights!, pairs) : undefined;
  const kernel = rt.kernel({
    shader: 'moe-matmul',
    defines: { WG: WORKGROUP_LANES, COMBINE: combine, ...weightDefines(w) },
    bindings: combine ? ['read', 'read', 'read', 'read', 'write'] : ['read', 'read', 'read', 'write'],
    params: true,
  });
  const colBlocks = Math.ceil(w.N / (COLUMNS_PER_LANE * WORKGROUP_LANES));
  const groups = colBlocks * (combine ? rows : pairs);
  w.parts.forEach((part, i) => {
    const p = params()
      .u32(w.N)
      .u32(w.K / 4)
      .u32(topK)
      .u32(colBlocks)
      .u32(groups)
      .u32(part.firstExpert)
      .u32(part.count)
      .u32(w.experts)
      // combine: the first part overwrites (unless accumulating), later parts add theirs
      .u32(i > 0 || o.accumulate ? 1 : 0)
      .u32(i === 0 ? 1 : 0)
      .u32(x.offset)
      .u32(ids.offset)
      .u32(rw?.offset ?? 0)
      .u32(out.offset)
      .u32(scalesOffset(w, part));
    const bindings = combine
      ? [x.binding, part.tensor, ids.binding, rw!.binding, out.binding]
      : [x.binding, part.tensor, ids.binding, out.binding];
    rec.dispatch(kernel, bindings, p, grid1d(groups, 1));
  });
}

/**
 * Pairs per chunk of the grouped kernel: each weight load feeds this many pairs. 8 beat 4
 * and 2 on lavapipe at 16 tokens x top-8 of 16 experts (see shaders/moe-matmul-grouped.wgsl).
 */
const GROUPED_PAIRS_PER_CHUNK = 8;

/** k steps (vec4s of x) per shared x load where the grouped kernel shares x across a subgroup. */
const GROUPED_SHARE_X = 8;

/**
 * Whether moeMatmulGrouped shares x across the subgroup (XSHARE in
 * shaders/moe-matmul-grouped.wgsl): on CPU adapters with subgroups of >= 8 lanes, where
 * every lane's load of the same x is a gather of its own. Both variants compute the same sums.
 */
export function moeGroupedSharesX(rt: KernelRuntime): boolean {
  return rt.ctx.kernelProfile === 'cpu' && hasSubgroupsOf(rt, GROUPED_SHARE_X);
}

export interface MoeGroupedOptions {
  /** 'row': x is f32 [pairs / topK, K] and pair p reads row floor(p / topK) (gate/up); 'pair': x is f32 [pairs, K], pair p reads row p (down). */
  input: 'row' | 'pair';
  /** Starts at a 16-byte boundary. */
  x: GpuTensor;
  weight: MoeExpertWeight;
  /** u32 [weight.experts + 1], from moeGroup over the same ids. */
  offsets: GpuTensor;
  /** u32 [pairs], from moeGroup over the same ids. */
  order: GpuTensor;
  /** f32 [pairs, N]: row p = W_{ids[p]} . x[row of p]; rows of out-of-range ids are not written. Must not overlap the inputs. */
  out: GpuTensor;
  pairs: number;
  topK: number;
}

function checkGroupedArgs(o: MoeGroupedOptions): void {
  const op = 'moeMatmulGrouped';
  const { weight: w, pairs, topK } = o;
  if (o.input !== 'row' && o.input !== 'pair') throw new TypeError(`${op}: input must be 'row' or 'pair', got ${String(o.input)}`);
  assertPositiveInt(op, { pairs, topK });
  if (pairs % topK !== 0) throw new RangeError(`${op}: pairs (${pairs}) must be a multiple of topK (${topK})`);
  assertKMultipleOf4(op, w.K);
  assertF32(op, o.x, o.out);
  assertU32(op, 'offsets', o.offsets);
  assertU32(op, 'order', o.order);
  assertLength(op, 'x', o.x, (o.input === 'row' ? pairs / topK : pairs) * w.K);
  assertLength(op, 'offsets', o.offsets, w.experts + 1);
  assertLength(op, 'order', o.order, pairs);
  assertLength(op, 'out', o.out, pairs * w.N);
  assertNoOverlap(op, ['x', 'out'], o.x, o.out);
  assertNoOverlap(op, ['offsets', 'out'], o.offsets, o.out);
  assertNoOverlap(op, ['order', 'out'], o.order, o.out);
}

/**
 * The expert matmul over pairs grouped by expert (moeGroup): each expert's weights are read
 * once per chunk of the pairs routed to it, where moeMatmul reads them once per pair. One
 * dispatch per part, a workgroup per (block of columns, expert of the part); see
 * shaders/moe-matmul-grouped.wgsl. With moeWeightedSum after the 'pair' form it computes
 * moeMatmul's 'combine'; the 'row' form computes 'expand' for the pairs with valid ids.
 */
export function moeMatmulGrouped(rt: KernelRuntime, rec: Recorder, o: MoeGroupedOptions): void {
  const op = 'moeMatmulGrouped';
  checkGroupedArgs(o);
  const { weight: w, pairs, topK } = o;
  const x = bindSlice(rt, op, 'x', o.x, (o.input === 'row' ? pairs / topK : pairs) * w.K, 16);
  const offsets = bindSlice(rt, op, 'offsets', o.offsets, w.experts + 1);
  const order = bindSlice(rt, op, 'order', o.order, pairs);
  const out = bindSlice(rt, op, 'out', o.out, pairs * w.N);
  assertBindingsApart(
    op,
    ['out', out],
    [
      ['x', x],
      ['offsets', offsets],
      ['order', order],
    ],
  );
  const shareX = moeGroupedSharesX(rt);
  const kernel = rt.kernel({
    shader: 'moe-matmul-grouped',
    defines: { WG: WORKGROUP_LANES, P: GROUPED_PAIRS_PER_CHUNK, XSHARE: shareX, XS: GROUPED_SHARE_X, ...weightDefines(w) },
    bindings: ['read', 'read', 'read', 'read', 'write'],
    params: true,
  });
  const colBlocks = Math.ceil(w.N / (COLUMNS_PER_LANE * WORKGROUP_LANES));
  for (const part of w.parts) {
    const p = params()
      .u32(w.N)
      .u32(w.K / 4)
      .u32(o.input === 'row' ? topK : 1)
      .u32(part.firstExpert)
      .u32(x.offset)
      .u32(offsets.offset)
      .u32(order.offset)
      .u32(out.offset)
      .u32(scalesOffset(w, part));
    rec.dispatch(kernel, [x.binding, part.tensor, offsets.binding, order.binding, out.binding], p, [colBlocks, part.count]);
  }
}
