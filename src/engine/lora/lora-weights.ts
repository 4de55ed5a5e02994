/**
 * LoRA adapters as the GPU holds them: every adapter in a slot of one tensor per layer and
 * fused projection, so that one pair of dispatches (shrink, expand: src/kernels/lora.ts)
 * serves a step whose rows use different adapters, or none (punica's batched LoRA).
 *
 * The forward pass fuses projections (q | k | v, gate | up), and so are their adapters: a
 * fused target's A stacks each part's A ([segments * rank, K] per slot), its B keeps each
 * output column's own rank values ([N, rank] per slot), and the expand kernel reads, for
 * column n, the rank columns of the shrink's output that belong to n's part. Ranks are
 * padded with zeros to the largest one loaded; a part an adapter does not target is zeros.
 */
import { AutoGlmError } from '../../errors.js';
import { prepareMatmulWeight, type MatmulWeight } from '../../kernels/matmul.js';
import type { KernelRuntime } from '../../kernels/runtime.js';
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
   * Per slot, the same adapter as two matmul weights for the tuned GEMM: A as [R, K], and B
   * as [N, R] with each column's part in its own rank columns (zeros elsewhere). A prompt
   * chunk's rows all share one adapter, and there the GEMM beats the per-row kernels, which
   * re-read A and B for every row (model-runner.ts LORA_GEMM_MIN_ROWS).
   */
  gemm: { a: MatmulWeight; b: MatmulWeight }[];
}

/** A layer's targets; absent where no loaded adapter changes that projection in this layer. */
export interface LoraLayer {
  qkv?: LoraTarget;
  o?: LoraTarget;
  gateUp?: LoraTarget;
  down?: LoraTarget;
}

export interface GpuLoras {
  /** Adapter names by slot. */
  names: readonly string[];
  rank: number;
  layers: LoraLayer[];
  /** The widest shrink output (R) of any target: the step's scratch width. */
  maxR: number;
  bytes: number;
}

type TargetName = keyof LoraLayer;

/** The modules each fused target is made of, in the fused weight's row order. */
function targetParts(spec: ModelSpec): Record<TargetName, LoraModule[]> {
  return {
    qkv: ['q_proj', 'k_proj', 'v_proj'],
    o: ['o_proj'],
    gateUp: spec.fusedGateUp ? ['gate_up_proj'] : ['gate_proj', 'up_proj'],
    down: ['down_proj'],
  };
}

export function uploadLoras(rt: KernelRuntime, spec: ModelSpec, adapters: readonly LoraAdapter[]): GpuLoras {
  const rank = Math.max(...adapters.map((a) => a.rank));
  const slots = adapters.length;
  const parts = targetParts(spec);
  let bytes = 0;
  let maxR = 0;
  const upload = (values: Float32Array, label: string): GpuTensor => {
    if (values.byteLength > rt.maxBindingBytes) {
      throw new AutoGlmError(
        'model_load_failed',
        `LoRA ${label} takes ${values.byteLength} bytes for ${slots} adapters, over this adapter's binding limit of ${rt.maxBindingBytes}: load fewer adapters or adapters of lower rank`,
      );
    }
    bytes += values.byteLength;
    return rt.upload('f32', values, label);
  };
  const layers = Array.from({ length: spec.numLayers }, (_, l): LoraLayer => {
    const layer: LoraLayer = {};
    for (const [name, modules] of Object.entries(parts) as [TargetName, LoraModule[]][]) {
      if (!adapters.some((a) => modules.some((m) => a.layers[l]!.has(m)))) continue;
      const shapes = modules.map((m) => loraModuleShape(spec, m)!);
      const K = shapes[0]!.inFeatures;
      const N = shapes.reduce((n, s) => n + s.outFeatures, 0);
      const R = modules.length * rank;
      const a = new Float32Array(slots * R * K);
      const b = new Float32Array(slots * N * rank);
      adapters.forEach((adapter, slot) => {
        let column = 0;
        modules.forEach((m, segment) => {
          const pair = adapter.layers[l]!.get(m);
          const out = shapes[segment]!.outFeatures;
          if (pair) {
            // A's r rows at the segment's first rows; B's r values at the start of each of its rows
            a.set(pair.a, (slot * R + segment * rank) * K);
            for (let n = 0; n < out; n++) b.set(pair.b.subarray(n * pair.rank, (n + 1) * pair.rank), (slot * N + column + n) * rank);
          }
          column += out;
        });
      });
      const starts: number[] = [];
      for (let i = 1, c = 0; i < shapes.length; i++) starts.push((c += shapes[i - 1]!.outFeatures));
      const gemm = adapters.map((_, slot) => {
        const dense = new Float32Array(N * R);
        for (let n = 0, segment = 0; n < N; n++) {
          while (segment < starts.length && n >= starts[segment]!) segment++;
          dense.set(b.subarray((slot * N + n) * rank, (slot * N + n + 1) * rank), n * R + segment * rank);
        }
        const label = `lora.${l}.${name}.${slot}`;
        const weights = {
          a: prepareMatmulWeight(rt, { data: a.slice(slot * R * K, (slot + 1) * R * K), N: R, K, dtype: 'f32', label: `${label}.a` }),
          b: prepareMatmulWeight(rt, { data: dense, N, K: R, dtype: 'f32', label: `${label}.b` }),
        };
        bytes += weights.a.bytes + weights.b.bytes;
        return weights;
      });
      layer[name] = { a: upload(a, `lora.${l}.${name}.a`), b: upload(b, `lora.${l}.${name}.b`), K, N, R, segmentStarts: starts, gemm };
      maxR = Math.max(maxR, R);
    }
    return layer;
  });
  return { names: adapters.map((a) => a.name), rank, layers, maxR, bytes };
}
