/**
 * LoRA adapters as the GPU holds them: every adapter in a slot of one tensor per layer and
 * fused projection, so that one pair of dispatches (shrink, expand: src/kernels/lora.ts)
 * serves a step whose rows use different adapters, or none (punica's batched LoRA).
 *
 * The forward pass fuses projections (q | k | v, gate | up), and so are their adapters: a
 * fused target's A stacks each part's A ([segments * rank, K] per slot), its B keeps each
 * output column's own rank values ([N, rank] per slot), and the expand kernel reads, for
 * column n, the rank columns of the shrink's output that belong to n's part. Lower ranks are
 * padded with zeros to the slots' rank; a part an adapter does not target is zeros.
 */
import { AutoGlmError } from '../../errors.js';
import { prepareMatmulWeight, type MatmulWeight } from '../../kernels/matmul.js';
import { f32ToF16Bits, type KernelRuntime } from '../../kernels/runtime.js';
import type { GpuTensor } from '../../kernels/tensor.js';
import type { ModelSpec } from '../model/model-spec.js';
import { loraModuleShape, type LoraAdapter, type LoraModule } from './peft-adapter.js';

/** One fused projection's adapters, all slots. */
export interface LoraTarget {
  /** f32 [slots, R, K]. */
  a: GpuTensor;
  /** f32 [slots, N, rank], the adapters' scales multiplied in. */
  b: GpuTensor;
  K: number;
  N: number;
  /** segments * rank. */
  R: number;
  /** Output columns where the fused projection's second and third parts begin. */
  segmentStarts: number[];
  /**
   * Per slot, whether its adapter changes this projection: a step skips the target when
   * none of its rows' adapters does (the slot's part of `a` and `b` is zeros then).
   */
  live: boolean[];
  /**
   * Per slot, the same adapter as two matmul weights for the tuned GEMM: A as [R, K], and B
   * as [N, R] with each column's part in its own rank columns (zeros elsewhere). A prompt
   * chunk's rows all share one adapter, and there the GEMM beats the per-row kernels, which
   * re-read A and B for every row (model-runner.ts LORA_GEMM_MIN_ROWS). Absent for a slot
   * nothing was written to.
   */
  gemm: ({ a: MatmulWeight; b: MatmulWeight } | undefined)[];
}

/** A layer's targets; absent where no loaded adapter changes that projection in this layer. */
export interface LoraLayer {
  qkv?: LoraTarget;
  o?: LoraTarget;
  gateUp?: LoraTarget;
  down?: LoraTarget;
}

export interface GpuLoras {
  /** Slots each target holds (EngineOptions.maxLoras): the kernels' `slots`. */
  capacity: number;
  /** Every slot's rank: adapters of lower rank are padded with zeros. */
  rank: number;
  layers: LoraLayer[];
  /** The widest shrink output (R) of any target: the step's scratch width. */
  maxR: number;
  bytes: number;
  gemmDType: LoraGemmDType;
}

type TargetName = keyof LoraLayer;

/**
 * The modules each fused target is made of, in the fused weight's row order; attention only
 * in a mixture-of-experts model (LoRA on its experts is not supported, loraModuleShape).
 */
function targetParts(spec: ModelSpec): Partial<Record<TargetName, LoraModule[]>> {
  const attention: Partial<Record<TargetName, LoraModule[]>> = { qkv: ['q_proj', 'k_proj', 'v_proj'], o: ['o_proj'] };
  if (spec.moe) return attention;
  return { ...attention, gateUp: spec.fusedGateUp ? ['gate_up_proj'] : ['gate_proj', 'up_proj'], down: ['down_proj'] };
}

/** A fused target's shapes: K, N, its parts' column starts and its shrink width R at `rank`. */
function targetShape(spec: ModelSpec, modules: readonly LoraModule[], rank: number): { K: number; N: number; R: number; starts: number[] } {
  const shapes = modules.map((m) => loraModuleShape(spec, m)!);
  const starts: number[] = [];
  for (let i = 1, c = 0; i < shapes.length; i++) starts.push((c += shapes[i - 1]!.outFeatures));
  return { K: shapes[0]!.inFeatures, N: shapes.reduce((n, s) => n + s.outFeatures, 0), R: modules.length * rank, starts };
}

/** Bytes of one target's slots: the stacked A [R, K] and B [N, rank] in f32, and each slot's GEMM copies [R, K] and [N, R] in `gemmDType`. */
function targetBytes(t: { K: number; N: number; R: number }, capacity: number, rank: number, gemmDType: LoraGemmDType): number {
  return capacity * (4 * (t.R * t.K + t.N * rank) + GEMM_BYTES[gemmDType] * (t.R * t.K + t.N * t.R));
}

/**
 * The GEMM copies' dtype: f16 where the device's weights are (they take a third off the
 * slots' bytes; at 128 rows on lavapipe they timed as f32 copies did, within noise), else f32.
 */
export type LoraGemmDType = 'f16' | 'f32';
const GEMM_BYTES: Record<LoraGemmDType, number> = { f16: 2, f32: 4 };

/**
 * Device bytes of `capacity` LoRA slots of `rank` with a target for every projection of
 * every layer (what uploadLoras allocates when slots are kept for run-time loading, and an
 * upper bound otherwise): for `autoglm bench sizing --max-loras`.
 */
export function loraSlotBytes(spec: ModelSpec, capacity: number, rank: number, gemmDType: LoraGemmDType): number {
  const perLayer = Object.values(targetParts(spec)).reduce(
    (n, modules) => n + targetBytes(targetShape(spec, modules, rank), capacity, rank, gemmDType),
    0,
  );
  return spec.numLayers * perLayer;
}

export interface LoraSlotPlan {
  /** Slots to keep on the device (>= adapters.length). */
  capacity: number;
  /** Rank of every slot (>= each adapter's). */
  rank: number;
  /**
   * Every projection of every layer gets a target, so that an adapter loaded later may
   * change any of them; otherwise only those some adapter given here changes.
   */
  allTargets: boolean;
}

/** Allocates the slots and writes `adapters` into slots 0, 1, ... */
export function uploadLoras(rt: KernelRuntime, spec: ModelSpec, adapters: readonly LoraAdapter[], plan: LoraSlotPlan): GpuLoras {
  const { capacity, rank } = plan;
  const gemmDType: LoraGemmDType = rt.preferredDType;
  const parts = targetParts(spec);
  let bytes = 0;
  let maxR = 0;
  const tensor = (elements: number, label: string): GpuTensor => {
    if (elements * 4 > rt.maxBindingBytes) {
      throw new AutoGlmError(
        'model_load_failed',
        `LoRA ${label} takes ${elements * 4} bytes for ${capacity} adapter slots of rank ${rank}, over this adapter's binding limit of ${rt.maxBindingBytes}: keep fewer slots or a lower rank`,
      );
    }
    // zeros: a slot nothing was written to adds nothing (never read while empty, all the same)
    return rt.upload('f32', new Float32Array(elements), label);
  };
  const layers = Array.from({ length: spec.numLayers }, (_, l): LoraLayer => {
    const layer: LoraLayer = {};
    for (const [name, modules] of Object.entries(parts) as [TargetName, LoraModule[]][]) {
      if (!plan.allTargets && !adapters.some((a) => modules.some((m) => a.layers[l]!.has(m)))) continue;
      const { K, N, R, starts } = targetShape(spec, modules, rank);
      const label = `lora.${l}.${name}`;
      layer[name] = {
        a: tensor(capacity * R * K, `${label}.a`),
        b: tensor(capacity * N * rank, `${label}.b`),
        K,
        N,
        R,
        segmentStarts: starts,
        live: [],
        gemm: [],
      };
      // with each slot's GEMM weights, once written
      bytes += targetBytes({ K, N, R }, capacity, rank, gemmDType);
      maxR = Math.max(maxR, R);
    }
    return layer;
  });
  const loras: GpuLoras = { capacity, rank, layers, maxR, bytes, gemmDType };
  adapters.forEach((adapter, slot) => writeLoraSlot(rt, spec, loras, slot, adapter));
  return loras;
}

/**
 * Writes an adapter into a slot (a free one: a step in flight must not be reading it):
 * its A and B into every target's stacked tensors, zeros where it changes nothing, and the
 * slot's GEMM weights. Refuses an adapter of a higher rank than the slots', or one that
 * changes a projection the slots have no target for.
 */
export function writeLoraSlot(rt: KernelRuntime, spec: ModelSpec, loras: GpuLoras, slot: number, adapter: LoraAdapter): void {
  const { rank } = loras;
  if (adapter.rank > rank)
    throw new AutoGlmError(
      'invalid_request',
      `LoRA adapter ${adapter.name} has rank ${adapter.rank}, above the slots' rank ${rank} (maxLoraRank)`,
      {
        param: 'lora_path',
      },
    );
  const parts = Object.entries(targetParts(spec)) as [TargetName, LoraModule[]][];
  // checked before anything is written: a refused adapter leaves the slot as it was
  for (let l = 0; l < spec.numLayers; l++) {
    for (const [name, modules] of parts) {
      const used = loras.layers[l]![name] ? undefined : modules.find((m) => adapter.layers[l]!.has(m));
      if (used)
        throw new AutoGlmError(
          'invalid_request',
          `LoRA adapter ${adapter.name} changes ${used} of layer ${l}, which the loaded slots have no room for`,
          { param: 'lora_path' },
        );
    }
  }
  for (let l = 0; l < spec.numLayers; l++) {
    for (const [name, modules] of parts) {
      const target = loras.layers[l]![name];
      if (!target) continue;
      const { K, N, R, segmentStarts } = target;
      const live = modules.some((m) => adapter.layers[l]!.has(m));
      const a = new Float32Array(R * K);
      const b = new Float32Array(N * rank);
      // the same B as [N, R], each column's values in its own part's rank columns, for the GEMM
      const dense = new Float32Array(N * R);
      let column = 0;
      modules.forEach((m, segment) => {
        const pair = adapter.layers[l]!.get(m);
        const out = segment < segmentStarts.length ? segmentStarts[segment]! - column : N - column;
        if (pair) {
          // A's r rows at the segment's first rows; B's r values at the start of each of its rows
          a.set(pair.a, segment * rank * K);
          for (let n = 0; n < out; n++) {
            const values = pair.b.subarray(n * pair.rank, (n + 1) * pair.rank);
            b.set(values, (column + n) * rank);
            dense.set(values, (column + n) * R + segment * rank);
          }
        }
        column += out;
      });
      rt.write(target.a, a, slot * R * K);
      rt.write(target.b, b, slot * N * rank);
      target.gemm[slot]?.a.destroy();
      target.gemm[slot]?.b.destroy();
      target.live[slot] = live;
      // no GEMM weights where they would be zeros: a run of this slot skips the target
      if (!live) {
        target.gemm[slot] = undefined;
        continue;
      }
      const label = `lora.${l}.${name}.${slot}`;
      const weight = (data: Float32Array, n: number, k: number, part: string): MatmulWeight =>
        loras.gemmDType === 'f16'
          ? prepareMatmulWeight(rt, { data: f32ToF16Bits(data), N: n, K: k, dtype: 'f16', label: `${label}.${part}` })
          : prepareMatmulWeight(rt, { data, N: n, K: k, dtype: 'f32', label: `${label}.${part}` });
      target.gemm[slot] = { a: weight(a, R, K, 'a'), b: weight(dense, N, R, 'b') };
    }
  }
}
