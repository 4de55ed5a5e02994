// The routing-weighted sum of a mixture-of-experts layer's per-pair outputs:
// out[r, n] (+)= sum over slots s with ids[r * topK + s] < experts of
//                routeWeights[r * topK + s] * y[r * topK + s, n].
// The slots are added in slot order, so the result is the same on every run. A slot with
// an out-of-range id is skipped, not multiplied by zero: the grouped matmul never writes
// its row of y, which may hold anything (NaN included).
// One invocation per output element; the grid folds into y past 65535 workgroups.

struct Params {
  n: u32,           // output elements: rows * N
  N: u32,
  topK: u32,
  experts: u32,
  accumulate: u32,  // 1 adds to what out holds, 0 overwrites it
  // element offsets of each tensor inside its binding (bindings start at the device's
  // storage offset alignment, tensors need not)
  yOff: u32,
  idsOff: u32,
  rwOff: u32,
  outOff: u32,
}

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> routeWeights: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) {
    return;
  }
  let row = i / p.N;
  let n = i - row * p.N;
  var sum = 0.0;
  for (var s = 0u; s < p.topK; s++) {
    let pair = row * p.topK + s;
    if (ids[p.idsOff + pair] < p.experts) {
      sum += routeWeights[p.rwOff + pair] * y[p.yOff + pair * p.N + n];
    }
  }
  let o = p.outOff + i;
  if (p.accumulate != 0u) {
    out[o] += sum;
  } else {
    out[o] = sum;
  }
}
