// Shared by the matmul kernels (gemv.wgsl, gemv-f16x8.wgsl, matmul.wgsl; pulled in with
// #include): the params of one weight part and the x, bias and out bindings (binding 1,
// the weights, is each kernel's own).
//
// XV4 (K and x's offset multiples of 4) binds x as vec4s, so that a kernel can read four
// k steps of a row in one load (x4At); xAt reads one element either way. Kernels read x
// through xAt(row, k) and x4At(row, k), `row` the element offset of the row's start.
//
// NORMX: the matmul's input is RMSNorm(x) (x * w[k], or (1 + w[k]) with NORM1P, over the
// row's inverse RMS): the weight is applied as x is loaded and the row's 1 / RMS scales the
// sums before they are stored (from rowInvRms, a pass over the row in the kernel's
// prologue; the GEMM with shared x sums the squares in its loop instead, gemmNorm in
// matmul.ts), so that a norm whose output only feeds this matmul needs no dispatch of its own.
// ACCUM: the result is added to what out holds (a residual stream updated in place).
struct Params {
  K: u32,
  // columns of this weight part, and vec4 columns per stored row of it
  np: u32,
  ldw4: u32,
  // element offsets of x and out inside their (alignment-rounded) bindings
  xOff: u32,
  ldx: u32,
  outOff: u32,
  ldo: u32,
  // first column of this part inside out and bias
  n0: u32,
  M: u32,
  // NORMX's epsilon
  eps: f32,
}

#if XV4
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
fn xRaw(i: u32) -> f32 {
  return x[i / 4u][i % 4u];
}
// four consecutive elements from i (a multiple of 4 with XV4)
fn xRaw4(i: u32) -> vec4<f32> {
  return x[i / 4u];
}
#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
fn xRaw(i: u32) -> f32 {
  return x[i];
}
fn xRaw4(i: u32) -> vec4<f32> {
  return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}
#endif

// The matmul's input at element k of the row starting at `row` (xAt), and four consecutive
// ones (x4At, k a multiple of 4 with XV4).
// GATED: x holds an MLP's fused [gate (K) | up (K)] rows (ldx = 2K) and the input is
// act(gate) * up, computed as it is loaded: no activation pass over [M, 2K] and no
// activation buffer between the gate/up and down projections.
#if GATED
fn xAt(row: u32, k: u32) -> f32 {
  let i = row + k;
  return {{ACT}}(xRaw(i)) * xRaw(i + p.K);
}
fn x4At(row: u32, k: u32) -> vec4<f32> {
  let i = row + k;
  let g = xRaw4(i);
  return vec4<f32>({{ACT}}(g.x), {{ACT}}(g.y), {{ACT}}(g.z), {{ACT}}(g.w)) * xRaw4(i + p.K);
}
#else
#if NORMX
fn xAt(row: u32, k: u32) -> f32 {
  return xRaw(row + k) * normScale(k);
}
fn x4At(row: u32, k: u32) -> vec4<f32> {
  return xRaw4(row + k) * normScale4(k);
}
#else
fn xAt(row: u32, k: u32) -> f32 {
  return xRaw(row + k);
}
fn x4At(row: u32, k: u32) -> vec4<f32> {
  return xRaw4(row + k);
}
#endif
#endif

#if XLANE0
// x4At(row, k) where both are the same in every lane, loaded by lane `sid` 0 only and
// broadcast (call it from subgroup-uniform control flow)
fn xFromLane0(row: u32, k: u32, sid: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (sid == 0u) {
    v = x4At(row, k);
  }
  return subgroupBroadcast(v, 0u);
}
#endif

// Where column `col` of a weight part starts (at k = 0) and its step per k, in elements of
// the kernel's W array: the layout of prepareMatmulWeight, column blocks of `wb` elements,
// each block K-major ([K][its width]), the last block possibly narrower. `ldw` is the
// elements per stored row (block widths add up to it).
fn wColumn(col: u32, ldw: u32, wb: u32) -> vec2<u32> {
  let blk = col / wb;
  let bw = min(wb, ldw - blk * wb);
  return vec2<u32>(blk * wb * p.K + (col - blk * wb), bw);
}

#if BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#else
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
#endif
@group(1) @binding(0) var<uniform> p: Params;

// Writes element i of out, or with ACCUM adds to it.
fn put(i: u32, v: f32) {
#if ACCUM
  out[i] += v;
#else
  out[i] = v;
#endif
}

// The norm's weight at k (1 without NORMX), and xAt(row, k) for a k whose weight `ng` is
// already loaded: kernels that load x for several rows at one k (the shared-x chunks) load
// the weight once for all of them.
fn normAt(k: u32) -> f32 {
#if NORMX
  return normScale(k);
#else
  return 1.0;
#endif
}

fn xAtWith(row: u32, k: u32, ng: f32) -> f32 {
#if NORMX
  return xRaw(row + k) * ng;
#else
  return xAt(row, k);
#endif
}

#if NORMX
// NORMV4 (K a multiple of 4, the weight 16-byte aligned): read as vec4s, one load per four k
#if NORMV4
@group(0) @binding({{NORMB}}) var<storage, read> normW: array<vec4<f32>>;
fn normRaw(k: u32) -> f32 {
  return normW[k / 4u][k % 4u];
}
fn normRaw4(k: u32) -> vec4<f32> {
  return normW[k / 4u];
}
#else
@group(0) @binding({{NORMB}}) var<storage, read> normW: array<f32>;
fn normRaw(k: u32) -> f32 {
  return normW[k];
}
fn normRaw4(k: u32) -> vec4<f32> {
  return vec4<f32>(normW[k], normW[k + 1u], normW[k + 2u], normW[k + 3u]);
}
#endif

// the norm's weight for element k, and for k..k+3
fn normScale(k: u32) -> f32 {
#if NORM1P
  return 1.0 + normRaw(k);
#else
  return normRaw(k);
#endif
}

fn normScale4(k: u32) -> vec4<f32> {
#if NORM1P
  return 1.0 + normRaw4(k);
#else
  return normRaw4(k);
#endif
}

// 1 / RMS of the K elements of the row starting at `row`: lane `lane` of `lanes` sums the
// squares of every lanes-th element (vec4s with XV4) and, with NORMSG, the lanes are a
// subgroup's and subgroupAdd totals them (call it from uniform control flow); without
// subgroups a kernel passes lane 0 of 1 and each invocation reads the whole row.
fn rowInvRms(row: u32, lane: u32, lanes: u32) -> f32 {
  var ss = 0.0;
#if XV4
  for (var k4 = lane; k4 < p.K / 4u; k4 += lanes) {
    let v = xRaw4(row + 4u * k4);
    ss += dot(v, v);
  }
#else
  for (var k = lane; k < p.K; k += lanes) {
    let v = xRaw(row + k);
    ss += v * v;
  }
#endif
#if NORMSG
  ss = subgroupAdd(ss);
#endif
  return inverseSqrt(ss / f32(p.K) + p.eps);
}

// rowInvRms of each of a GEMV's TM rows (their starts in xRow; every invocation holds all of them)
fn rowsInvRms(xRow: array<u32, TM>, lane: u32, lanes: u32) -> array<f32, TM> {
  var inv: array<f32, TM>;
  for (var r = 0u; r < TM; r++) {
    inv[r] = rowInvRms(xRow[r], lane, lanes);
  }
  return inv;
}
#endif

// Two vec4<f16> columns packed in one vec4<u32> (the 16-byte W loads of gemv-f16x8.wgsl and
// of matmul.wgsl's WPAIRS): the first four halves, and the last four.
fn lo(q: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
}

fn hi(q: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
}
