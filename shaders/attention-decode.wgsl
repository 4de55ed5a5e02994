// Decode attention for adapters that run shaders on the CPU (lavapipe): one query row x
// HEADS query heads sharing one kv head, over a key range, with the keys spread over the
// lanes instead of over a tile in workgroup memory.
//
// Why a second decode kernel: on llvmpipe every lane of a workgroup is a SIMD lane, every
// load whose address is not a compile-time constant is a per-lane scalar load, and every
// barrier is a coroutine switch. The tiled kernel (attention.wgsl) re-reads the queries
// and scores from workgroup memory for each key and waits at three barriers per tile of
// keys: about 0.3 GB/s of KV read there. Here each lane owns keys lid, lid + LANES, ...,
// holds the queries in registers (loaded once), reads each of its keys' K and V exactly
// once, and keeps its own online softmax state; there is no workgroup memory and no
// barrier. Each lane writes its state as one split partial (max, sum, accumulator) and
// attention-reduce.wgsl merges the LANES x splits partials of a row, exactly as it merges
// split-K partials.
//
// The per-lane code is written out by the TypeScript wrapper (src/kernels/attention-decode.ts)
// as named registers q<m>_<c>, a<m>_<c> (vec4 chunks of the head dims), not arrays
// indexed in loops, so that they stay registers (or plain stack slots) on lavapipe.
// K and V are read as vec4 chunks: f16 caches as pairs of u32 (4 halves), unpacked.

const HD: u32 = {{HEAD_DIM}}u;
const M: u32 = {{M}}u;             // query heads per item
const LANES: u32 = {{LANES}}u;     // invocations per workgroup, one key each per step
const T: u32 = {{T}}u;             // keys per lane per step (one max and rescale per step)
const M_INIT: f32 = -1.0e30;

#include attention-args
#include soft-cap
#include attention-decode-io

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.n_items) {
    return;
  }
  let it = items[idx];
  let kvh = it.q_head0 / p.group;
  let lo = first_key(it);
  let last = it.k_end - 1u;
  let qb = it.q_row0 * p.q_stride + it.q_head0 * HD;
{{DECL}}
  for (var key0 = lo; key0 < it.k_end; key0 += LANES * T) {
{{STEP}}
  }
  let out0 = it.partial + lid * M * (HD + 2u);
{{STORE}}
}
