// Paged attention over the KV cache, flash style: one workgroup takes a work item (a few
// query rows of one sequence x a group of query heads sharing one kv head, over a range of
// keys), walks the keys in tiles of TK with an online softmax, and never holds more than
// one tile of scores. The same shader serves both paths, varied by defines:
// - prefill: ROWS query rows x HEADS heads per item, the whole causal key range;
// - decode: ROWS = 1, and long contexts split over several items (split-K), each writing
//   partial (max, sum, unnormalised accumulator) that attention-reduce.wgsl combines.
// Sharing a kv head across HEADS query heads (GQA) reads each K/V value once per group.
// With p.softcap > 0 the scores are soft-capped (Gemma 2) before the mask (soft-cap.wgsl).
//
// Cache layout: [block][kvHead][slotInBlock][dim] (see src/kernels/kv-write.ts).
#if F16
enable f16;
#endif

const HD: u32 = {{HEAD_DIM}}u;
const HEADS: u32 = {{HEADS}}u;
const ROWS: u32 = {{ROWS}}u;
const M: u32 = {{M}}u;             // ROWS * HEADS query vectors per item
const WG: u32 = 64u;
const TK: u32 = 64u;               // keys per tile: one per invocation when scoring
const DPT: u32 = {{DPT}}u;         // ceil(HD / WG): output dims per invocation
// Running maxima start at M_INIT; masked scores are MASKED, far below it, so they never
// raise a maximum and are recognised without relying on infinities.
const M_INIT: f32 = -1.0e30;
const MASKED: f32 = -3.0e38;

#include attention-args
#include soft-cap

@group(0) @binding(0) var<storage, read> q: array<f32>;
#if VEC4
// head dims a multiple of 4: keys are read and dotted 4 values at a time
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<{{KV}}>>;
#else
@group(0) @binding(1) var<storage, read> k_cache: array<{{KV}}>;
#endif
@group(0) @binding(2) var<storage, read> v_cache: array<{{KV}}>;
@group(0) @binding(3) var<storage, read> block_tables: array<u32>;
@group(0) @binding(4) var<storage, read> items: array<WorkItem>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

var<workgroup> item: WorkItem;
var<workgroup> q_sh: array<f32, M * HD>;
var<workgroup> s_sh: array<f32, M * TK>;
var<workgroup> base_sh: array<u32, TK>;
var<workgroup> m_sh: array<f32, M>;
var<workgroup> l_sh: array<f32, M>;
var<workgroup> alpha_sh: array<f32, M>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.n_items) {
    return;
  }
  if (lid == 0u) {
    item = items[idx];
  }
  let it = workgroupUniformLoad(&item);
  let kvh = it.q_head0 / p.group;

  // queries, pre-scaled; rows past n_rows are zero and masked below
  for (var i = lid; i < M * HD; i += WG) {
    let m = i / HD;
    let r = m / HEADS;
    var v = 0.0;
    if (r < it.n_rows) {
      v = q[(it.q_row0 + r) * p.q_stride + (it.q_head0 + m % HEADS) * HD + i % HD] * p.scale;
    }
    q_sh[i] = v;
  }
  if (lid < M) {
    m_sh[lid] = M_INIT;
    l_sh[lid] = 0.0;
  }
  var acc: array<f32, M * DPT>;
  for (var i = 0u; i < M * DPT; i++) {
    acc[i] = 0.0;
  }
  workgroupBarrier();

  // the first row sees the earliest keys; later rows are masked per key below
  var lo = it.k_start;
  if (p.window > 0u && it.pos0 + 1u > p.window) {
    lo = max(lo, it.pos0 + 1u - p.window);
  }
  for (var t0 = lo; t0 < it.k_end; t0 += TK) {
    // scores: invocation lid takes key t0 + lid against all M queries
    let t = t0 + lid;
    var s: array<f32, M>;
    for (var m = 0u; m < M; m++) {
      s[m] = 0.0;
    }
    if (t < it.k_end) {
      let blk = block_tables[it.bt_off + t / p.block_size];
      let base = ((blk * p.n_kv_heads + kvh) * p.block_size + t % p.block_size) * HD;
      base_sh[lid] = base;
#if VEC4
      for (var d = 0u; d < HD; d += 4u) {
        let kv = vec4<f32>(k_cache[(base + d) / 4u]);
        for (var m = 0u; m < M; m++) {
          let o = m * HD + d;
          s[m] += dot(vec4<f32>(q_sh[o], q_sh[o + 1u], q_sh[o + 2u], q_sh[o + 3u]), kv);
        }
      }
#else
      for (var d = 0u; d < HD; d++) {
        let kv = f32(k_cache[base + d]);
        for (var m = 0u; m < M; m++) {
          s[m] += q_sh[m * HD + d] * kv;
        }
      }
#endif
      // q was pre-scaled, so these are the scaled scores the cap applies to
      if (p.softcap > 0.0) {
        for (var m = 0u; m < M; m++) {
          s[m] = soft_cap(s[m], p.softcap);
        }
      }
    }
    for (var m = 0u; m < M; m++) {
      let r = m / HEADS;
      let pos = it.pos0 + r;
      let visible = t < it.k_end && r < it.n_rows && t <= pos && (p.window == 0u || t + p.window > pos);
      s_sh[m * TK + lid] = select(MASKED, s[m], visible);
    }
    workgroupBarrier();

    // online softmax: invocation m rescales query m's running state
    if (lid < M) {
      let m_old = m_sh[lid];
      var mx = m_old;
      for (var j = 0u; j < TK; j++) {
        mx = max(mx, s_sh[lid * TK + j]);
      }
      var sum = 0.0;
      for (var j = 0u; j < TK; j++) {
        let sc = s_sh[lid * TK + j];
        let e = select(0.0, exp(sc - mx), sc > M_INIT);
        s_sh[lid * TK + j] = e;
        sum += e;
      }
      let alpha = exp(m_old - mx);
      alpha_sh[lid] = alpha;
      l_sh[lid] = l_sh[lid] * alpha + sum;
      m_sh[lid] = mx;
    }
    workgroupBarrier();

    // accumulate P V: invocation lid owns dims lid, lid + WG, ... of every query
    let nk = min(TK, it.k_end - t0);
    for (var j = 0u; j < DPT; j++) {
      for (var m = 0u; m < M; m++) {
        acc[m * DPT + j] *= alpha_sh[m];
      }
    }
    for (var tt = 0u; tt < nk; tt++) {
      let base = base_sh[tt];
      for (var j = 0u; j < DPT; j++) {
        let d = lid + j * WG;
        if (d < HD) {
          let v = f32(v_cache[base + d]);
          for (var m = 0u; m < M; m++) {
            acc[m * DPT + j] += s_sh[m * TK + tt] * v;
          }
        }
      }
    }
    workgroupBarrier();
  }

  if (it.partial == NO_PARTIAL) {
    for (var m = 0u; m < M; m++) {
      let r = m / HEADS;
      if (r < it.n_rows) {
        let inv = 1.0 / l_sh[m];
        let o = (it.q_row0 + r) * p.out_stride + (it.q_head0 + m % HEADS) * HD;
        for (var j = 0u; j < DPT; j++) {
          let d = lid + j * WG;
          if (d < HD) {
            out[o + d] = acc[m * DPT + j] * inv;
          }
        }
      }
    }
  } else {
    // partials: [M][max, sum] then [M][HD] unnormalised accumulators
    if (lid < M) {
      partials[it.partial + lid * 2u] = m_sh[lid];
      partials[it.partial + lid * 2u + 1u] = l_sh[lid];
    }
    for (var m = 0u; m < M; m++) {
      for (var j = 0u; j < DPT; j++) {
        let d = lid + j * WG;
        if (d < HD) {
          partials[it.partial + 2u * M + m * HD + d] = acc[m * DPT + j];
        }
      }
    }
  }
}
