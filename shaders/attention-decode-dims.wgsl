// Decode attention for adapters that run shaders on the CPU (lavapipe), head dims over the
// lanes: one subgroup of LANES invocations takes one query row and the M query heads that
// share one kv head, each lane owning CPL vec4 chunks (4 * CPL dims) of every head, and
// walks the item's keys one at a time: each lane loads its chunks of the key's K and V,
// a subgroupAdd finishes the scores, and every lane keeps the same online-softmax state.
//
// Why: on llvmpipe a load whose address is not uniform is a per-lane scalar loop with a
// bounds check (about 0.3 ns per lane element against 0.02 ns per multiply-add on the
// 2-core machine), and that is what dominated attention-decode.wgsl, where each lane reads
// whole keys (all HD dims) for one query head. Here a key's K and V are read once per kv
// head, HD / LANES dims per lane, and the queries and accumulators of M heads take only
// 2 * M * CPL vec4 registers per lane. An item whose row was not split writes its heads to
// out; a split item writes one partial (max, sum and accumulator per head, the record
// attention-decode.wgsl writes per lane) that attention-reduce.wgsl merges with the others.
//
// The per-head code is written out by the TypeScript wrapper (src/kernels/attention-decode-
// dims.ts) as named registers q<m>_<c>, a<m>_<c>, not arrays indexed in loops.
enable subgroups;
// the key loop's bounds come from the item record (a storage read), so the analysis cannot
// see they are the same for the whole subgroup; they are: one workgroup is one item
diagnostic(off, subgroup_uniformity);

const HD: u32 = {{HEAD_DIM}}u;
const M: u32 = {{M}}u;             // query heads per item (one kv head's group, or part of it)
const LANES: u32 = {{LANES}}u;     // invocations per workgroup: one subgroup
const CPL: u32 = {{CPL}}u;         // vec4 chunks of each head per lane: HD / (4 * LANES)
const KB: u32 = {{KB}}u;           // keys per block of the main loop (BLOCK)
const M_INIT: f32 = -1.0e30;

#include attention-args
#include soft-cap
#include attention-decode-io
// items whose keys were not split write their heads here, normalised (partial == NO_PARTIAL)
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.n_items) {
    return;
  }
  let it = items[idx];
  let kvh = it.q_head0 / p.group;
  let lo = first_key(it);
  // this lane's first dim in the row's first head of the item
  let qb = it.q_row0 * p.q_stride + it.q_head0 * HD + lid * 4u * CPL;
  // the same place in out
  let ob = it.q_row0 * p.out_stride + it.q_head0 * HD + lid * 4u * CPL;
{{DECL}}
  var t = lo;
  // KB keys at a time (BLOCK: one running-max update and one rescale per head per block,
  // the KB scores of a head reduced by one vec4 subgroupAdd), then the rest one by one
  for (; t + KB <= it.k_end; t += KB) {
{{BLOCK}}
  }
  for (; t < it.k_end; t++) {
    let b = key_base(it, kvh, t) + lid * CPL;
{{STEP}}
  }
  let out0 = it.partial;
{{STORE}}
}
