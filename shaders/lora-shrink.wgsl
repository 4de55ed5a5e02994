// LoRA shrink, punica-style BGMV: t[row, j] = sum_k xn[row, k] * a[slot(row), j, k], each
// row with its own adapter slot; a row whose slot is >= p.slots (no adapter) gets zeros.
// xn is x, or with NORM the RMSNorm of x (x * w[k], or (1 + w[k]) with ONE_PLUS, over the
// row's RMS): the engine folds norms into its matmuls, so the raw residual stream arrives.
//
// A workgroup computes four outputs t[row, j0..j0+3] (one vec4 accumulator: an x load
// feeds four of a's rows) and its invocations split K between them, reducing at the end,
// so a row's K is never one invocation's loop. The row's sum of squares rides along in
// the same loop (the x loads are there already) and scales the sums once, at the store.
//
// VEC4 (K and the element offsets of x, a and w multiples of 4) reads four k steps per
// load; otherwise one. x_off, a_off, w_off and kv are in loaded units (vec4 or f32), s_off
// and t_off in elements.
//
// Each row reads its slot's whole A (BGMV: rows do not share loads even when they share a
// slot), so the work is rows * R * K multiply-adds and as many loads of A.
#if SUBGROUP
// SUBGROUP (CPU adapters): a workgroup is one subgroup and reduces with subgroupAdd: on
// lavapipe every barrier of a tree reduction is a coroutine switch per SIMD batch.
enable subgroups;
#endif

struct Params {
  R: u32,
  slots: u32,
  // workgroups in use: rows * ceil(R / 4)
  groups: u32,
  tiles: u32,
  // K in loaded units, and as f32 elements (the mean of the squares divides by it)
  kv: u32,
  k: u32,
  x_off: u32,
  a_off: u32,
  w_off: u32,
  s_off: u32,
  t_off: u32,
  eps: f32,
}

const WG: u32 = {{WG}}u;
alias V = {{V}};

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> a: array<V>;
@group(0) @binding(2) var<storage, read> row_slots: array<u32>;
@group(0) @binding(3) var<storage, read_write> t: array<f32>;
#if NORM
@group(0) @binding(4) var<storage, read> w: array<V>;
#endif
@group(1) @binding(0) var<uniform> p: Params;

#if !SUBGROUP
var<workgroup> partial: array<vec4<f32>, WG>;
#if NORM
var<workgroup> partial_sq: array<f32, WG>;
#endif
#endif

// xv times four rows of a, as one vec4 of four partial sums
#if VEC4
fn mac4(acc: vec4<f32>, xv: V, a0: V, a1: V, a2: V, a3: V) -> vec4<f32> {
  return acc + vec4<f32>(dot(xv, a0), dot(xv, a1), dot(xv, a2), dot(xv, a3));
}
fn sq(xv: V) -> f32 {
  return dot(xv, xv);
}
#else
fn mac4(acc: vec4<f32>, xv: V, a0: V, a1: V, a2: V, a3: V) -> vec4<f32> {
  return acc + xv * vec4<f32>(a0, a1, a2, a3);
}
fn sq(xv: V) -> f32 {
  return xv * xv;
}
#endif

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let g = wid.x + wid.y * nwg.x;
  // the grid's spill into y rounds up; the surplus workgroups leave as a whole
  if (g >= p.groups) {
    return;
  }
  let row = g / p.tiles;
  let j0 = (g - row * p.tiles) * 4u;
  let slot = row_slots[p.s_off + row];
  let has = slot < p.slots;
  // a row without an adapter reads nothing (a loop of zero steps) and still reaches the
  // reduction; rows past R re-read row R - 1 and are never stored
  let s = min(slot, p.slots - 1u);
  let last = p.R - 1u;
  let a0 = p.a_off + (s * p.R + j0) * p.kv;
  let a1 = p.a_off + (s * p.R + min(j0 + 1u, last)) * p.kv;
  let a2 = p.a_off + (s * p.R + min(j0 + 2u, last)) * p.kv;
  let a3 = p.a_off + (s * p.R + min(j0 + 3u, last)) * p.kv;
  let xb = p.x_off + row * p.kv;
  let end = select(0u, p.kv, has);

  var acc = vec4<f32>(0.0);
  var ss = 0.0;
  for (var k = li; k < end; k += WG) {
    var xv = x[xb + k];
#if NORM
    ss += sq(xv);
#if ONE_PLUS
    xv *= V(1.0) + w[p.w_off + k];
#else
    xv *= w[p.w_off + k];
#endif
#endif
    acc = mac4(acc, xv, a[a0 + k], a[a1 + k], a[a2 + k], a[a3 + k]);
  }

#if SUBGROUP
  acc = subgroupAdd(acc);
#if NORM
  ss = subgroupAdd(ss);
#endif
#else
  partial[li] = acc;
#if NORM
  partial_sq[li] = ss;
#endif
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      partial[li] += partial[li + stride];
#if NORM
      partial_sq[li] += partial_sq[li + stride];
#endif
    }
    workgroupBarrier();
  }
  acc = partial[0];
#if NORM
  ss = partial_sq[0];
#endif
#endif

#if NORM
  let scale = inverseSqrt(ss / f32(p.k) + p.eps);
#else
  let scale = 1.0;
#endif
  if (li < 4u && j0 + li < p.R) {
    // select, not a product: with eps 0 a skipped row's scale is inf, and inf * 0 is NaN
    t[p.t_off + row * p.R + j0 + li] = select(0.0, acc[li] * scale, has);
  }
}
