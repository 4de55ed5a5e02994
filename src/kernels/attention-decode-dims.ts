/**
 * Decode attention with the head dims spread over the lanes of one subgroup
 * (shaders/attention-decode-dims.wgsl): the CPU adapters' decode path where the adapter has
 * subgroups of at least DIMS_DECODE_LANES lanes and the head dim splits into whole vec4
 * chunks per lane. Every work item covers one query row and all query heads of one kv head
 * (up to the plan's cap) and writes its heads to `out`, or, where the row's keys were split,
 * one partial that attention-reduce.wgsl merges with the row's other split-K partials.
 *
 * The shader's per-head block is written out here as named registers (see the shader's
 * header for why).
 */
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import { grid1d } from './grid.js';
import { hasSubgroupsOf } from './subgroups.js';
import { queryRegisters, type CpuDecodeArgs } from './attention-decode.js';
import type { GpuTensor } from './tensor.js';

/** Lanes per work item: one SIMD register's worth on lavapipe (8 x 32-bit on AVX2). */
export const DIMS_DECODE_LANES = 8;

/** Whether the dims kernel can run this head dim on this adapter (whole vec4 chunks per lane, subgroups of >= 8 lanes). */
export function dimsDecodeSupported(rt: KernelRuntime, headDim: number): boolean {
  return headDim % (4 * DIMS_DECODE_LANES) === 0 && hasSubgroupsOf(rt, DIMS_DECODE_LANES);
}

/** The DECL, STEP and STORE blocks of attention-decode-dims.wgsl for `heads` heads of `headDim`. */
export function attentionDecodeDimsCode(heads: number, headDim: number, lanes: number): { DECL: string; STEP: string; STORE: string } {
  const cpl = headDim / (4 * lanes);
  const H = [...Array(heads).keys()];
  const C = [...Array(cpl).keys()];
  // qb already points at this lane's first dim, so chunk c of head m sits where it would for a whole head
  const decl = queryRegisters(heads, headDim, cpl);
  const step: string[] = [];
  for (const c of C) step.push(`    let k${c} = load_k(b + ${c}u);`);
  for (const m of H) {
    step.push(`    let s${m} = subgroupAdd(${C.map((c) => `dot(q${m}_${c}, k${c})`).join(' + ')});`);
    step.push(`    let nm${m} = max(mx${m}, s${m});`, `    let al${m} = exp(mx${m} - nm${m});`, `    let p${m} = exp(s${m} - nm${m});`);
    step.push(`    l${m} = l${m} * al${m} + p${m};`, `    mx${m} = nm${m};`);
  }
  for (const c of C) {
    step.push(`    let v${c} = load_v(b + ${c}u);`);
    for (const m of H) step.push(`    a${m}_${c} = a${m}_${c} * al${m} + p${m} * v${c};`);
  }
  // a whole item: its heads, normalised, into out
  const store: string[] = ['  if (it.partial == NO_PARTIAL) {'];
  for (const m of H) {
    store.push(`    let inv${m} = 1.0 / l${m};`);
    for (const c of C) for (let e = 0; e < 4; e++) store.push(`    out[ob + ${m * headDim + 4 * c + e}u] = a${m}_${c}[${e}] * inv${m};`);
  }
  // a split: the record of attention-decode.wgsl's lanes, (max, sum) per head, then each head's HD sums
  store.push('    return;', '  }', '  if (lid == 0u) {');
  for (const m of H) store.push(`    partials[out0 + ${2 * m}u] = mx${m};`, `    partials[out0 + ${2 * m + 1}u] = l${m};`);
  store.push('  }');
  for (const m of H) {
    for (const c of C) {
      const o = `out0 + ${2 * heads + m * headDim + 4 * c}u + lid * ${4 * cpl}u`;
      for (let e = 0; e < 4; e++) store.push(`  partials[${o} + ${e}u] = a${m}_${c}[${e}];`);
    }
  }
  return { DECL: decl.join('\n'), STEP: step.join('\n'), STORE: store.join('\n') };
}

/** Records the dims decode kernel over the plan's decode items (partials only). */
export function recordDimsDecode(rt: KernelRuntime, rec: Recorder, a: CpuDecodeArgs & { out: GpuTensor }): void {
  const f16 = a.kCache.dtype === 'f16';
  const lanes = DIMS_DECODE_LANES;
  const kernel = rt.kernel({
    shader: 'attention-decode-dims',
    defines: {
      HEAD_DIM: a.headDim,
      M: a.heads,
      LANES: lanes,
      CPL: a.headDim / (4 * lanes),
      F16: f16,
      KV4: f16 ? 'vec2<u32>' : 'vec4<f32>',
    },
    generated: () => attentionDecodeDimsCode(a.heads, a.headDim, lanes),
    bindings: ['read', 'read', 'read', 'read', 'read', 'write', 'write'],
    params: true,
  });
  rec.dispatch(kernel, [a.q, a.kCache, a.vCache, a.blockTables, a.items, a.partials, a.out], a.params, grid1d(a.nItems, 1));
}
