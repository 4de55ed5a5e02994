// RMSNorm: out = v / sqrt(mean(v^2) + eps) * w, or * (1 + w) in the Gemma/GLM form.
//
// Normalises `vectors` vectors of `dim` values each. Vector v is segment (v % segments)
// of row (v / segments), at element offset + row * row_stride + segment * dim: plain rows
// are segments = 1, row_stride = dim; Qwen3's per-head q/k norm is segments = n_heads,
// and a slice of a fused QKV row is reached through offset and row_stride. The output
// uses the same layout as the input.
//
// A workgroup of 256 invocations handles 256 / TPR vectors with TPR invocations each, so
// short vectors (head_dim 64..256) keep every invocation busy while long ones (hidden
// sizes of 8192 and more) are still spread across all 256. TPR is a power of two.
//
// Variants: IN_PLACE (out is x itself: one read_write binding, since WebGPU forbids a
// writable binding aliasing another), ADD (residual += x, written back, then the norm
// of the new residual: one dispatch instead of two per layer) and ACCUMULATE (out += the
// norm: a post-norm's output added into the residual stream, Gemma 2/3's sandwich norms).

#if SUBGROUP
// SUBGROUP (CPU adapters): a workgroup is one subgroup of TPR lanes on one vector, and the
// sum of squares is a subgroupAdd. On lavapipe a barrier is a coroutine switch for every
// SIMD batch of the workgroup, so the tree reduction over 256 invocations cost more than
// the norm itself.
enable subgroups;
#endif

struct Params {
  vectors: u32,
  dim: u32,
  segments: u32,
  row_stride: u32,
  offset: u32,
  eps: f32,
}

const WG: u32 = {{WG}}u;
const TPR: u32 = {{TPR}}u;
const VECTORS_PER_WG: u32 = WG / TPR;

#if ADD
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> residual: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#else
#if IN_PLACE
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
#endif
#endif
@group(1) @binding(0) var<uniform> p: Params;

#if !SUBGROUP
var<workgroup> partial: array<f32, WG>;
#endif

fn weight(d: u32) -> f32 {
#if ONE_PLUS
  return 1.0 + w[d];
#else
  return w[d];
#endif
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let lane = li % TPR;
  let local_vector = li / TPR;
  let v = (wid.x + wid.y * nwg.x) * VECTORS_PER_WG + local_vector;
  // invocations past the last vector still take part in the barriers below
  let in_range = v < p.vectors;
  let base = p.offset + (v / p.segments) * p.row_stride + (v % p.segments) * p.dim;

  var sum_sq = 0.0;
  if (in_range) {
    for (var d = lane; d < p.dim; d += TPR) {
#if ADD
      let r = residual[base + d] + x[base + d];
      residual[base + d] = r;
#else
      let r = x[base + d];
#endif
      sum_sq += r * r;
    }
  }
#if SUBGROUP
  let total = subgroupAdd(sum_sq);
#else
  partial[li] = sum_sq;
  workgroupBarrier();
  for (var stride = TPR / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      partial[li] += partial[li + stride];
    }
    workgroupBarrier();
  }
  let total = partial[local_vector * TPR];
#endif
  let scale = 1.0 / sqrt(total / f32(p.dim) + p.eps);
  if (!in_range) {
    return;
  }
  for (var d = lane; d < p.dim; d += TPR) {
#if ADD
    // each invocation re-reads only the residual elements it wrote itself
    out[base + d] = residual[base + d] * scale * weight(d);
#else
#if IN_PLACE
    x[base + d] = x[base + d] * scale * weight(d);
#else
#if ACCUMULATE
    out[base + d] += x[base + d] * scale * weight(d);
#else
    out[base + d] = x[base + d] * scale * weight(d);
#endif
#endif
#endif
  }
}
