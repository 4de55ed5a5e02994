// Split-K reduction for decode attention: combines the partial (max, sum, accumulator)
// of n_splits key ranges of one query row x HEADS heads into the normalised output.
// out = sum_s w_s acc_s / sum_s w_s l_s with w_s = exp(m_s - max_s m_s); a split that saw
// no visible key has l_s = 0 and a tiny m_s, so its weight is 0. Soft-capped scores need
// nothing here: the splits' maxima and sums are of the capped scores already.

const HD: u32 = {{HEAD_DIM}}u;
const M: u32 = {{M}}u;             // heads per item (one query row)
const WG: u32 = 64u;

struct Params {
  n_items: u32,
  q_stride: u32,
}

struct ReduceItem {
  out_row: u32,
  q_head0: u32,
  n_splits: u32,
  partial: u32,      // float offset of split 0; split s is at partial + s * M * (HD + 2)
}

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read> items: array<ReduceItem>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.n_items) {
    return;
  }
  let it = items[idx];
  let stride = M * (HD + 2u);
  for (var i = lid; i < M * HD; i += WG) {
    let m = i / HD;
    let d = i % HD;
    var mx = -3.0e38;
    for (var s = 0u; s < it.n_splits; s++) {
      mx = max(mx, partials[it.partial + s * stride + m * 2u]);
    }
    var den = 0.0;
    var num = 0.0;
    for (var s = 0u; s < it.n_splits; s++) {
      let b = it.partial + s * stride;
      let w = exp(partials[b + m * 2u] - mx);
      den += w * partials[b + m * 2u + 1u];
      num += w * partials[b + 2u * M + m * HD + d];
    }
    out[it.out_row * p.q_stride + (it.q_head0 + m) * HD + d] = num / den;
  }
}
