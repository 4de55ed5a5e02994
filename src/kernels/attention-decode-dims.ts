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
import { queryRegisters, softCapBlock, type CpuDecodeArgs } from './attention-decode.js';
import type { GpuTensor } from './tensor.js';

/**
 * Keys per block of the dims kernel's main loop (1-4; see the BLOCK code): 4 where the
 * item's registers are few (at most 2 vec4 chunks of each head per lane and 8 in all),
 * else 1. Interleaved A/B on lavapipe (f16 cache, 1-16 rows, 192-1024 keys), 4 keys against
 * 1: head dim 64 with 1, 3 or 4 heads per item 0.72-0.99x the time; 8 heads per item
 * 1.12-1.14x, head dim 128 with 4 or 6 heads 1.11-1.34x (2 keys: 0.83-1.09x).
 */
export function dimsKeysPerBlock(heads: number, headDim: number): number {
  const cpl = headDim / (4 * DIMS_DECODE_LANES);
  return cpl <= 2 && heads * cpl <= 8 ? 4 : 1;
}

/** Lanes per work item: one SIMD register's worth on lavapipe (8 x 32-bit on AVX2). */
export const DIMS_DECODE_LANES = 8;

/** Whether the dims kernel can run this head dim on this adapter (whole vec4 chunks per lane, subgroups of >= 8 lanes). */
export function dimsDecodeSupported(rt: KernelRuntime, headDim: number): boolean {
  return headDim % (4 * DIMS_DECODE_LANES) === 0 && hasSubgroupsOf(rt, DIMS_DECODE_LANES);
}

/** The DECL, STEP and STORE blocks of attention-decode-dims.wgsl for `heads` heads of `headDim`. */
export function attentionDecodeDimsCode(
  heads: number,
  headDim: number,
  lanes: number,
  kb: number,
): { DECL: string; STEP: string; BLOCK: string; STORE: string } {
  if (!(kb >= 1 && kb <= 4)) throw new RangeError(`attention-decode-dims: keys per block must be 1-4, got ${kb}`);
  const cpl = headDim / (4 * lanes);
  const H = [...Array(heads).keys()];
  const C = [...Array(cpl).keys()];
  // qb already points at this lane's first dim, so chunk c of head m sits where it would for a whole head
  const decl = queryRegisters(heads, headDim, cpl);
  const step: string[] = [];
  for (const c of C) step.push(`    let k${c} = load_k(b + ${c}u);`);
  for (const m of H) step.push(`    var s${m} = subgroupAdd(${C.map((c) => `dot(q${m}_${c}, k${c})`).join(' + ')});`);
  // q was pre-scaled, so these are the scaled scores the cap applies to
  step.push(...softCapBlock(H.map((m) => `s${m}`)));
  for (const m of H) {
    step.push(`    let nm${m} = max(mx${m}, s${m});`, `    let al${m} = exp(mx${m} - nm${m});`, `    let p${m} = exp(s${m} - nm${m});`);
    step.push(`    l${m} = l${m} * al${m} + p${m};`, `    mx${m} = nm${m};`);
  }
  for (const c of C) {
    step.push(`    let v${c} = load_v(b + ${c}u);`);
    for (const m of H) step.push(`    a${m}_${c} = a${m}_${c} * al${m} + p${m} * v${c};`);
  }
  // KB keys per block: scores of a head as one vec4 (padded with its first) and one
  // subgroupAdd, one max and one rescale per block; exps per head per key 1 + 1 / KB
  // instead of 2
  const block: string[] = [];
  const J = [...Array(kb).keys()];
  for (const j of J) block.push(`    let b${j} = key_base(it, kvh, t + ${j}u) + lid * CPL;`);
  for (const j of J) for (const c of C) block.push(`    let k${j}_${c} = load_k(b${j} + ${c}u);`);
  const lanesOf = (xs: string[]): string => `vec${kb}<f32>(${xs.join(', ')})`;
  const sw = ['x', 'y', 'z', 'w'];
  for (const m of H) {
    const parts = J.map((j) => C.map((c) => `dot(q${m}_${c}, k${j}_${c})`).join(' + '));
    if (kb === 1) block.push(`    var s${m}_0 = subgroupAdd(${parts[0]});`);
    else {
      block.push(`    let sv${m} = subgroupAdd(${lanesOf(parts)});`);
      for (const j of J) block.push(`    var s${m}_${j} = sv${m}.${sw[j]};`);
    }
  }
  block.push(...softCapBlock(H.flatMap((m) => J.map((j) => `s${m}_${j}`))));
  for (const m of H) {
    const scores = J.map((j) => `s${m}_${j}`);
    block.push(`    let nm${m} = ${scores.reduce((acc, x) => `max(${acc}, ${x})`, `mx${m}`)};`, `    let al${m} = exp(mx${m} - nm${m});`);
    for (const j of J) block.push(`    let p${m}_${j} = exp(s${m}_${j} - nm${m});`);
    block.push(`    l${m} = l${m} * al${m} + ${J.map((j) => `p${m}_${j}`).join(' + ')};`, `    mx${m} = nm${m};`);
  }
  for (const c of C) {
    for (const j of J) block.push(`    let v${j}_${c} = load_v(b${j} + ${c}u);`);
    for (const m of H) block.push(`    a${m}_${c} = a${m}_${c} * al${m} + ${J.map((j) => `p${m}_${j} * v${j}_${c}`).join(' + ')};`);
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
  return { DECL: decl.join('\n'), STEP: step.join('\n'), BLOCK: block.join('\n'), STORE: store.join('\n') };
}

/** Records the dims decode kernel over the plan's decode items (partials only). */
export function recordDimsDecode(rt: KernelRuntime, rec: Recorder, a: CpuDecodeArgs & { out: GpuTensor; keysPerBlock?: number }): void {
  const f16 = a.kCache.dtype === 'f16';
  const lanes = DIMS_DECODE_LANES;
  const kb = a.keysPerBlock ?? dimsKeysPerBlock(a.heads, a.headDim);
  const kernel = rt.kernel({
    shader: 'attention-decode-dims',
    defines: {
      HEAD_DIM: a.headDim,
      M: a.heads,
      LANES: lanes,
      CPL: a.headDim / (4 * lanes),
      KB: kb,
      F16: f16,
      KV4: f16 ? 'vec2<u32>' : 'vec4<f32>',
    },
    generated: () => attentionDecodeDimsCode(a.heads, a.headDim, lanes, kb),
    bindings: ['read', 'read', 'read', 'read', 'read', 'write', 'write'],
    params: true,
  });
  rec.dispatch(kernel, [a.q, a.kCache, a.vCache, a.blockTables, a.items, a.partials, a.out], a.params, grid1d(a.nItems, 1));
}
