// Prefill GEMM for int8 weights: out[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]), any M, N,
// K, W[n, k] = q * s with one scale s per column and group of GS k steps (int8-quant.ts).
//
// matmul.wgsl's register block (TM rows x TN vec4 columns per invocation, written out by
// the wrapper as named registers: gemmBlockCodeI8), walking K group by group: at a group's
// start each column group loads its four scales, and each k step loads one word per column
// group (its four int8, int8-weights.wgsl), unpacked and scaled in registers (one vec4
// multiply per column group and k step, against TM multiply-adds). XSHARE shares x across
// the subgroup over XS k steps (XS a multiple of 4 dividing GS), as matmul.wgsl does.
#if SID
enable subgroups;
#endif

#include activation-fns
#include matmul-args
#include int8-weights

const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const WGN: u32 = {{WGN}}u;
const XS: u32 = {{XS}}u;
const WB: u32 = {{WB}}u;

// Writes one accumulator: row m, vec4 column c, skipping what is past M or N.
fn store(m: u32, c: u32, v: vec4<f32>) {
  let n = 4u * c;
  if (m >= p.M || n >= p.np) {
    return;
  }
  let o = p.outOff + m * p.ldo + p.n0 + n;
  for (var e = 0u; e < 4u; e++) {
    if (n + e < p.np) {
#if BIAS
      put(o + e, v[e] + bias[p.n0 + n + e]);
#else
      put(o + e, v[e]);
#endif
    }
  }
}

@compute @workgroup_size(WGN)
#if SID
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) sgs: u32) {
#else
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
#endif
  let ldw = p.ldw4;
  // column group j of this invocation is c0 + j * WGN: lanes stay adjacent for every j;
  // groups past N load a clamped column and are never written
#if ROWSFIRST
  let c0 = wid.y * WGN * TN + lid.x;
  let m0 = wid.x * TM;
#else
  let c0 = wid.x * WGN * TN + lid.x;
  let m0 = wid.y * TM;
#endif
  // rows past M re-read row M - 1 (uniform control flow); their sums are never written
  let lastRow = p.M - 1u;
  let K4 = kQuads();
  let G = groups();
  let sOff = K4 * ldw;
{{DECL}}
  var k = 0u;
#if XSHARE
  let xLane = sid % XS;
#endif
  for (var g = 0u; g < G; g++) {
    let kEnd = min(k + GS, p.K);
{{SCALES}}
#if XSHARE
    // XS k steps at a time: lane l loads x[row, k + l % XS]
    for (; k + XS <= kEnd; k += XS) {
{{CHUNK}}
    }
#endif
    // a quad (four k steps) at a time; the last quad of K may be partial (its W is zero
    // past K, and its x past K is never read)
    for (; k < kEnd; k += 4u) {
      let n = min(4u, kEnd - k);
{{QUAD}}
    }
  }
{{STORE}}
}
