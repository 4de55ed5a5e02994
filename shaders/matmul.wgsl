// Prefill GEMM: out[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]), any M, N, K.
//
// Register-blocked: each invocation accumulates a TM x TN block of `Acc` values (vec4 or
// scalar columns, VW wide) in registers. W is stored K-major in blocks of WB vec4 columns
// (each block [K][its width], see prepareMatmulWeight), so at each k the lanes of a
// workgroup read contiguous runs; each column group walks its block with its own stride.
// All invocations of a workgroup share the same TM rows: the x reads depend only on the
// workgroup id and loop counters, so every lane reads the same address (a broadcast on
// GPUs; lavapipe (Mesa 25) still gathers it per lane inside the k loop: it scalarises a
// load only when the address is built from constants and push constants, not from a loop
// counter or the workgroup id; XSHARE below is the alternative).
// Each W load feeds VW * TM multiply-adds; each x scalar feeds VW * TN.
// (x is read as scalars: a vec4 load of x per row for four k steps, as the GEMV does,
// timed 11-19% of the FMA kernel at 1024^3 on lavapipe against 28% for this loop, at every
// tiling of bench/kernels --sweep: the longer body spills.)
//
// The block is written out by the TypeScript wrapper (gemmBlockCode: the DECL, STEP and
// STORE defines) as named registers a_<row>_<col>, w_<col>, x_<row>, not arrays indexed in
// loops: lavapipe does not always unroll those loops, and then keeps the accumulators in
// memory.
#if WF16
enable f16;
#endif
// SID (XSHARE, or NORMX's subgroup sums): the kernel takes its subgroup lane and size.
#if SID
enable subgroups;
#endif

#include activation-fns
#include matmul-args

const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const WGN: u32 = {{WGN}}u;
const VW: u32 = {{VW}}u;
const XS: u32 = {{XS}}u;
// W elements per full block of columns
const WBE: u32 = {{WB}}u * (4u / VW);
alias Acc = {{ACC}};

@group(0) @binding(1) var<storage, read> w: array<{{WELEM}}>;
// column units per lane and column group: TN vec4 columns, or TN / 2 pairs of them (WPAIRS)
const CU: u32 = {{CU}}u;

// WPAIRS (f16 weights): a lane owns two adjacent vec4 columns and reads both as one 16-byte
// vec4<u32> (as gemv-f16x8.wgsl does, unpacked by lo and hi of matmul-args), one per-lane
// load for eight columns instead of two

// Writes one accumulator: row m0 + r, column group c (VW columns), skipping what is past M or N.
fn store(m: u32, c: u32, v: Acc) {
  let n = VW * c;
  if (m >= p.M || n >= p.np) {
    return;
  }
  let o = p.outOff + m * p.ldo + p.n0 + n;
#if VEC4
  for (var e = 0u; e < 4u; e++) {
    if (n + e < p.np) {
#if BIAS
      put(o + e, v[e] + bias[p.n0 + n + e]);
#else
      put(o + e, v[e]);
#endif
    }
  }
#else
#if BIAS
  put(o, v + bias[p.n0 + n]);
#else
  put(o, v);
#endif
#endif
}

@compute @workgroup_size(WGN)
#if SID
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) sgs: u32) {
#else
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
#endif
  // W elements per stored row
  let ldw = p.ldw4 * (4u / VW);
  // column group j of this invocation is c0 + j * WGN: lanes stay adjacent for every j;
  // groups past N load a clamped column and are never written
#if ROWSFIRST
  let c0 = wid.y * WGN * CU + lid.x;
  let m0 = wid.x * TM;
#else
  let c0 = wid.x * WGN * CU + lid.x;
  let m0 = wid.y * TM;
#endif
  // rows past M re-read row M - 1 (uniform control flow); their sums are never written
  let lastRow = p.M - 1u;
{{DECL}}
  let K = p.K;
  var k = 0u;
#if XSHARE
  // XS k steps at a time: lane l of each subgroup loads x[row, k + l % XS] (one load per
  // row for XS steps) and subgroupShuffle hands step s's value (lane s's) to every lane. On
  // lavapipe every load inside a loop, x's uniform one included, is a scalarised per-lane
  // gather with a bounds check, so this cuts the loads per multiply-add by a third or more
  // (16 x 2 tiling). The steps stay a loop: written out as XS straight-line steps with
  // subgroupBroadcast they spilled and timed slower than no sharing at all.
  let xLane = sid % XS;
  for (; k + XS <= K; k += XS) {
{{CHUNK}}
  }
#endif
  for (; k < K; k++) {
{{STEP}}
  }
{{STORE}}
}
