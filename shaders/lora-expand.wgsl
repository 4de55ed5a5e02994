// LoRA expand, punica-style BGMV: out[row, n] += sum_{j < rank} t[row, seg(n) * rank + j]
// * b[slot(row), n, j]. A row whose slot is >= p.slots (no adapter) is not written at all,
// so its output stays bit for bit what the base matmul wrote.
//
// A fused projection (q | k | v, gate | up) has one A and one B per part: columns from
// p.s1 on belong to segment 1, from p.s2 on to segment 2 (a start of N or more: no such
// segment), and each segment reads its own `rank` columns of t.
//
// One invocation per output column of one row (the row is the workgroup's y, so no lane
// divides its index), or with COLS4 (N, the segment starts and out's offset multiples of
// 4) per four adjacent columns, which then share a segment: each t load feeds four of b's
// rows and out is read and written as one vec4. On lavapipe every load is a per-lane
// gather and an integer division is scalarised: the two together took 16 rows x 2304
// columns at rank 16 from 0.85 to 0.46 ms. The loop over rank (8..64) is short either way.
//
// VEC4 (rank and the element offsets of t and b multiples of 4) reads four j steps per
// load. Offsets and strides in the params are in loaded units (vec4 or f32); o_off and
// ldo count out's elements (vec4s with COLS4).

struct Params {
  rows: u32,
  // columns, or groups of four with COLS4
  cols: u32,
  n: u32,
  slots: u32,
  // rank and R (t's row length) in loaded units
  rank_v: u32,
  r_v: u32,
  s1: u32,
  s2: u32,
  t_off: u32,
  b_off: u32,
  s_off: u32,
  o_off: u32,
}

const WG: u32 = {{WG}}u;
alias V = {{V}};

@group(0) @binding(0) var<storage, read> t: array<V>;
@group(0) @binding(1) var<storage, read> b: array<V>;
@group(0) @binding(2) var<storage, read> row_slots: array<u32>;
#if COLS4
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
#else
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#endif
@group(1) @binding(0) var<uniform> p: Params;

#if VEC4
fn dotv(u: V, v: V) -> f32 {
  return dot(u, v);
}
#else
fn dotv(u: V, v: V) -> f32 {
  return u * v;
}
#endif

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  // rows past 65535 spill into z
  let row = wid.y + wid.z * nwg.y;
  let c = gid.x;
  if (row >= p.rows || c >= p.cols) {
    return;
  }
  let slot = row_slots[p.s_off + row];
  if (slot >= p.slots) {
    return;
  }
#if COLS4
  let n0 = 4u * c;
#else
  let n0 = c;
#endif
  let seg = u32(n0 >= p.s1) + u32(n0 >= p.s2);
  let tb = p.t_off + row * p.r_v + seg * p.rank_v;
  let b0 = p.b_off + (slot * p.n + n0) * p.rank_v;
#if COLS4
  let b1 = b0 + p.rank_v;
  let b2 = b1 + p.rank_v;
  let b3 = b2 + p.rank_v;
  var acc = vec4<f32>(0.0);
  for (var j = 0u; j < p.rank_v; j++) {
    let tv = t[tb + j];
    acc += vec4<f32>(dotv(tv, b[b0 + j]), dotv(tv, b[b1 + j]), dotv(tv, b[b2 + j]), dotv(tv, b[b3 + j]));
  }
#else
  var acc = 0.0;
  for (var j = 0u; j < p.rank_v; j++) {
    acc += dotv(t[tb + j], b[b0 + j]);
  }
#endif
  let o = p.o_off + row * p.cols + c;
  out[o] += acc;
}
