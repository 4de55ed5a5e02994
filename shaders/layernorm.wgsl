// LayerNorm over rows: out = (x - mean) / sqrt(var + eps) * w + b, var the biased
// (population) variance, as torch.nn.LayerNorm computes it.
//
// Two reductions per row: the mean first, then the sum of squared deviations, which is
// better conditioned than E[x^2] - E[x]^2 when the mean is large against the spread.
// Same work split as rmsnorm.wgsl: TPR invocations per row, WG / TPR rows per workgroup,
// or (SUBGROUP, CPU adapters) one subgroup per row reduced by subgroupAdd, no barriers.
// IN_PLACE: out is x itself (one read_write binding).
#if SUBGROUP
enable subgroups;
#endif

struct Params {
  rows: u32,
  dim: u32,
  eps: f32,
}

const WG: u32 = {{WG}}u;
const TPR: u32 = {{TPR}}u;
const ROWS_PER_WG: u32 = WG / TPR;

#if IN_PLACE
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#endif
@group(1) @binding(0) var<uniform> p: Params;

#if !SUBGROUP
var<workgroup> partial: array<f32, WG>;
#endif

// Sum of `value` over the TPR invocations of one row; every invocation must call it.
fn row_sum(li: u32, lane: u32, local_row: u32, value: f32) -> f32 {
#if SUBGROUP
  return subgroupAdd(value);
#else
  partial[li] = value;
  workgroupBarrier();
  for (var stride = TPR / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      partial[li] += partial[li + stride];
    }
    workgroupBarrier();
  }
  let total = partial[local_row * TPR];
  // nobody may overwrite partial[] for the next reduction before everyone has read it
  workgroupBarrier();
  return total;
#endif
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let lane = li % TPR;
  let local_row = li / TPR;
  let row = (wid.x + wid.y * nwg.x) * ROWS_PER_WG + local_row;
  let in_range = row < p.rows;
  let base = row * p.dim;

  var sum = 0.0;
  if (in_range) {
    for (var d = lane; d < p.dim; d += TPR) {
      sum += x[base + d];
    }
  }
  let mean = row_sum(li, lane, local_row, sum) / f32(p.dim);

  var sum_sq = 0.0;
  if (in_range) {
    for (var d = lane; d < p.dim; d += TPR) {
      let c = x[base + d] - mean;
      sum_sq += c * c;
    }
  }
  let scale = 1.0 / sqrt(row_sum(li, lane, local_row, sum_sq) / f32(p.dim) + p.eps);
  if (!in_range) {
    return;
  }
  for (var d = lane; d < p.dim; d += TPR) {
    let y = (x[base + d] - mean) * scale * w[d] + b[d];
#if IN_PLACE
    x[base + d] = y;
#else
    out[base + d] = y;
#endif
  }
}
