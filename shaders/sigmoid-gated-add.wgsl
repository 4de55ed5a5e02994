// A sigmoid-gated residual add (Qwen2-MoE's shared expert):
// out[r, n] += sigmoid(dot(x[r, :], gate)) * y[r, n].
//
// One workgroup per row: the WG invocations sum strided parts of the row's dot product,
// reduce them to the gate, then add the gated row of y into out, n = lane, lane + WG, ...
// The grid folds into y past maxComputeWorkgroupsPerDimension (row = wid.x + wid.y * nwg.x).
//
// SUBGROUP (CPU adapters): a workgroup is one subgroup of WG lanes and the dot product is a
// subgroupAdd, with no workgroup memory and no barrier (on lavapipe a barrier is a coroutine
// switch for every SIMD batch of the workgroup). Otherwise a tree reduction in workgroup
// memory; WG is a power of two.

#if SUBGROUP
enable subgroups;
#endif

struct Params {
  rows: u32,
  K: u32,
  N: u32,
  // element offsets of each tensor inside its binding (bindings start at the device's
  // storage offset alignment, tensors need not)
  xOff: u32,
  gateOff: u32,
  yOff: u32,
  outOff: u32,
}

const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

#if !SUBGROUP
var<workgroup> partial: array<f32, WG>;
#endif

// 1 / (1 + exp(-z)) without overflow: exp of -|z| only, which underflows to 0 for a large
// |z| and leaves the exact limits 1 (z >= 0) and 0 (z < 0)
fn sigmoid(z: f32) -> f32 {
  let e = exp(-abs(z));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), z >= 0.0);
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  // uniform across the workgroup, so returning here keeps the reduction below uniform
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return;
  }

  let x_base = p.xOff + row * p.K;
  var sum = 0.0;
  for (var k = lane; k < p.K; k += WG) {
    sum += x[x_base + k] * gate[p.gateOff + k];
  }
#if SUBGROUP
  let dot_xg = subgroupAdd(sum);
#else
  partial[lane] = sum;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      partial[lane] += partial[lane + stride];
    }
    workgroupBarrier();
  }
  let dot_xg = partial[0];
#endif
  let g = sigmoid(dot_xg);

  let y_base = p.yOff + row * p.N;
  let out_base = p.outOff + row * p.N;
  for (var n = lane; n < p.N; n += WG) {
    out[out_base + n] += g * y[y_base + n];
  }
}
