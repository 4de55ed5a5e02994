/**
 * Decode attention with keys spread over the lanes (shaders/attention-decode.wgsl): the
 * decode path on adapters that run shaders on the CPU, where the tiled kernel's workgroup
 * memory and barriers dominate. Every work item writes one split partial per lane; the
 * plan (prepareAttentionBatch with decodeLanes > 0) sizes the partials and adds the reduce
 * items that merge them.
 *
 * The shader's per-lane block is written out here as named registers (see the shader's
 * header for why).
 */
import type { Params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';
import { grid1d } from './grid.js';

/** Lanes per work item on CPU adapters: one SIMD register's worth (8 x 32-bit on AVX2). */
export const DECODE_LANES = 8;

/**
 * Keys each lane takes per step. More keys per step share one max and one rescale of the
 * accumulators, but every key's scores and K/V chunk are live at once, and lavapipe's
 * compile time grows steeply with that: 2 keys for one head of 64 dims compiled in about
 * 4 s cold, 4 keys in about 9 s, for the same speed.
 */
export function keysPerLane(heads: number, headDim: number): number {
  return Math.max(1, Math.min(4, Math.floor(32 / (heads * (headDim / 4)))));
}

/**
 * The decode kernels' per-head state as named registers: `chunks` vec4 chunks of each of
 * `heads` query heads from q (at qb, scaled), their accumulators, and the running max and sum.
 */
export function queryRegisters(heads: number, headDim: number, chunks: number): string[] {
  const decl: string[] = [];
  for (let m = 0; m < heads; m++) {
    for (let c = 0; c < chunks; c++) {
      const at = (e: number) => `q[qb + ${m * headDim + 4 * c + e}u]`;
      decl.push(`  let q${m}_${c} = vec4<f32>(${at(0)}, ${at(1)}, ${at(2)}, ${at(3)}) * p.scale;`);
      decl.push(`  var a${m}_${c} = vec4<f32>(0.0);`);
    }
    decl.push(`  var mx${m} = M_INIT;`, `  var l${m} = 0.0;`);
  }
  return decl;
}

/**
 * The decode kernels' logit soft-capping of the named score variables (soft_cap in
 * soft-cap.wgsl): one branch on the uniform p.softcap, so the uncapped path only tests it.
 */
export function softCapBlock(scores: readonly string[]): string[] {
  return ['    if (p.softcap > 0.0) {', ...scores.map((s) => `      ${s} = soft_cap(${s}, p.softcap);`), '    }'];
}

/** The DECL, STEP and STORE blocks of attention-decode.wgsl for one (heads, headDim, T). */
export function attentionDecodeCode(
  heads: number,
  headDim: number,
  lanes: number,
  t: number,
): { DECL: string; STEP: string; STORE: string } {
  const chunks = headDim / 4;
  const H = [...Array(heads).keys()];
  const C = [...Array(chunks).keys()];
  const J = [...Array(t).keys()];
  const decl = queryRegisters(heads, headDim, chunks);
  const step: string[] = [];
  for (const j of J) {
    step.push(`    let t${j} = key0 + ${j * lanes}u + lid;`, `    let ok${j} = t${j} < it.k_end;`);
    step.push(`    let b${j} = key_base(it, kvh, min(t${j}, last));`);
    for (const c of C) {
      step.push(`    let k${j}_${c} = load_k(b${j} + ${c}u);`);
      for (const m of H) step.push(c === 0 ? `    var sv${j}_${m} = q${m}_0 * k${j}_0;` : `    sv${j}_${m} += q${m}_${c} * k${j}_${c};`);
    }
    for (const m of H) step.push(`    var d${j}_${m} = sv${j}_${m}.x + sv${j}_${m}.y + sv${j}_${m}.z + sv${j}_${m}.w;`);
  }
  // q was pre-scaled, so these are the scaled scores the cap applies to: one uniform branch per step
  step.push(...softCapBlock(J.flatMap((j) => H.map((m) => `d${j}_${m}`))));
  // a masked key scores far below M_INIT, so it never raises a running maximum
  for (const j of J) for (const m of H) step.push(`    let s${j}_${m} = select(-3.0e38, d${j}_${m}, ok${j});`);
  for (const m of H) {
    const scores = J.map((j) => `s${j}_${m}`);
    step.push(`    let nm${m} = ${scores.reduce((acc, s) => `max(${acc}, ${s})`, `mx${m}`)};`);
    step.push(`    let al${m} = exp(mx${m} - nm${m});`);
    for (const j of J) step.push(`    let p${j}_${m} = select(0.0, exp(s${j}_${m} - nm${m}), ok${j});`);
    step.push(`    l${m} = l${m} * al${m} + ${J.map((j) => `p${j}_${m}`).join(' + ')};`, `    mx${m} = nm${m};`);
  }
  for (const c of C) {
    for (const j of J) step.push(`    let v${j}_${c} = load_v(b${j} + ${c}u);`);
    for (const m of H) step.push(`    a${m}_${c} = a${m}_${c} * al${m} + ${J.map((j) => `p${j}_${m} * v${j}_${c}`).join(' + ')};`);
  }
  const store: string[] = [];
  for (const m of H) {
    store.push(`  partials[out0 + ${2 * m}u] = mx${m};`, `  partials[out0 + ${2 * m + 1}u] = l${m};`);
    for (const c of C) {
      const o = 2 * heads + m * headDim + 4 * c;
      for (let e = 0; e < 4; e++) store.push(`  partials[out0 + ${o + e}u] = a${m}_${c}[${e}];`);
    }
  }
  return { DECL: decl.join('\n'), STEP: step.join('\n'), STORE: store.join('\n') };
}

/** What the CPU decode kernels (this one and attention-decode-dims.ts) record over. */
export interface CpuDecodeArgs {
  q: GpuTensor;
  kCache: GpuTensor;
  vCache: GpuTensor;
  blockTables: GpuTensor;
  items: GpuTensor;
  nItems: number;
  partials: GpuTensor;
  heads: number;
  headDim: number;
  /** The Params block the decode kernels share (built by attention.ts for nItems items). */
  params: Params;
}

export interface LanesDecodeArgs extends CpuDecodeArgs {
  lanes: number;
}

/** Records the lanes decode kernel over the plan's decode items (partials only). */
export function recordLanesDecode(rt: KernelRuntime, rec: Recorder, a: LanesDecodeArgs): void {
  const f16 = a.kCache.dtype === 'f16';
  const t = keysPerLane(a.heads, a.headDim);
  const kernel = rt.kernel({
    shader: 'attention-decode',
    defines: {
      HEAD_DIM: a.headDim,
      M: a.heads,
      LANES: a.lanes,
      T: t,
      F16: f16,
      KV4: f16 ? 'vec2<u32>' : 'vec4<f32>',
    },
    generated: () => attentionDecodeCode(a.heads, a.headDim, a.lanes, t),
    bindings: ['read', 'read', 'read', 'read', 'read', 'write'],
    params: true,
  });
  rec.dispatch(kernel, [a.q, a.kCache, a.vCache, a.blockTables, a.items, a.partials], a.params, grid1d(a.nItems, 1));
}
