// Expert matmul of a mixture-of-experts layer: every (row, slot) pair multiplies by the
// weight matrix of the expert the router picked for it.
//
// W holds the experts of one part (src/kernels/moe-matmul.ts splits the experts into parts
// that each fit one storage binding), one after another, each [N][K] row-major as
// safetensors stores it: row n of expert e (local to the part) starts at vec4
// (e * N + n) * K4. WF16 stores IEEE halves packed two per u32 word, so a vec4 of W is one
// vec2<u32> unpacked with unpack2x16float: f16 is storage only, the arithmetic is f32, and
// no shader-f16 feature is needed. INT8 stores a vec4 of W as one u32 word (k = 4j + b in
// byte b, unpacked with unpack4xI8 as int8-weights.wgsl does) and, after all the part's
// words (at sOff), one f32 scale per row and group of GS k: [count][N][ceil(K / GS)].
// Each group's products are summed unscaled and scaled once at its end, as in gemv-i8.wgsl.
// On lavapipe int8 takes 0.75-0.88x f16's time (1 token x top-8 of 16 experts, N 1536 x
// K 2048 and 2048 x 768, min of 8-10 alternating runs, three runs, 2-core lavapipe shared
// with other work, 2026-12), not 0.5x: its half bytes are not what bounds the loop here
// (f16 reads ~5 GB/s), and a vec4<u32> load of 16 k per row was no faster (0.95x).
//
// A workgroup covers 4 * WG consecutive columns n of one pair (expand) or one row
// (combine); each invocation owns four adjacent columns and walks K four values at a
// time, one vec4 of x against a vec4 of each of its four W rows. On lavapipe every storage
// load is a per-lane gather, so the loop is bound by its loads: four columns per lane
// make 5 loads per 16 multiply-adds instead of 2 per 4 (one column per lane): against one
// column per lane, 0.62-0.90x the time with f32 weights and 0.63-0.80x with f16 (N 1536 x
// K 2048 and 2048 x 768, 8 experts, 1 and 16 rows of topK 8; two alternating runs each,
// 2-core lavapipe, 2026-12-08).
// Workgroups are numbered linearly (column block fastest) and the grid folds into y past
// 65535 (grid1d), so the group index is rebuilt from wid and nwg.
//
// expand:  out[pair, n] = W_{ids[pair]}[n, :] . x[pair / topK, :]
// combine: out[row, n] (+)= sum_s routeWeights[row * topK + s] * W_{ids[..]}[n, :] . x[row * topK + s, :]
//
// One dispatch per part: only the experts [firstExpert, firstExpert + count) are read.
// An id at or past `experts` (out of range) acts as an expert of zeros: expand's first
// part writes a zero row for it, combine leaves it out of the sum. No id reads outside W.

struct Params {
  N: u32,
  K4: u32,          // K / 4: vec4s per row of W and of x
  topK: u32,
  colBlocks: u32,   // ceil(N / (4 * WG))
  groups: u32,      // workgroups with work: colBlocks * (pairs or rows); the folded grid has a few more
  firstExpert: u32, // this part's experts: [firstExpert, firstExpert + count)
  count: u32,
  experts: u32,     // all experts: ids >= experts are out of range
  addToOut: u32,    // combine: 1 adds to out (a later part, or accumulate), 0 overwrites
  zeroUnrouted: u32, // expand: 1 (the first part) writes zero rows for out-of-range ids
  // element offsets of each tensor inside its binding (bindings start at the device's
  // storage offset alignment, tensors need not); xOff is in vec4s
  xOff: u32,
  idsOff: u32,
  rwOff: u32,
  outOff: u32,
  sOff: u32,        // INT8: the word where the part's scales start
}

const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
// one of WF32, WF16 and INT8
#include moe-weights
@group(0) @binding(2) var<storage, read> ids: array<u32>;
#if COMBINE
@group(0) @binding(3) var<storage, read> routeWeights: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#else
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#endif
@group(1) @binding(0) var<uniform> p: Params;

// Rows n .. n + 3 of part-local expert e against row xRow of x (K4 vec4s each): four
// columns per invocation, so each x load feeds four W loads. Rows past N re-read row N - 1
// (their sums are never written).
fn rowsDot(e: u32, n: u32, xRow: u32) -> vec4<f32> {
  let base = e * p.N;
  let r0 = base + n;
  let r1 = base + min(n + 1u, p.N - 1u);
  let r2 = base + min(n + 2u, p.N - 1u);
  let r3 = base + min(n + 3u, p.N - 1u);
  let w0 = r0 * p.K4;
  let w1 = r1 * p.K4;
  let w2 = r2 * p.K4;
  let w3 = r3 * p.K4;
  let xi = p.xOff + xRow * p.K4;
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  let one = vec4<f32>(1.0);
#if INT8
  // row r's scale of group g at word s_r + g
  let G = (p.K4 + GS4 - 1u) / GS4;
  let s0 = p.sOff + r0 * G;
  let s1 = p.sOff + r1 * G;
  let s2 = p.sOff + r2 * G;
  let s3 = p.sOff + r3 * G;
  var acc = vec4<f32>(0.0);
  for (var g = 0u; g < G; g++) {
    a0 = vec4<f32>(0.0);
    a1 = vec4<f32>(0.0);
    a2 = vec4<f32>(0.0);
    a3 = vec4<f32>(0.0);
    // the last group is shorter when GS does not divide K
    let kEnd = min((g + 1u) * GS4, p.K4);
    for (var k4 = g * GS4; k4 < kEnd; k4++) {
      let xv = x[xi + k4];
      a0 += wAt(w0 + k4) * xv;
      a1 += wAt(w1 + k4) * xv;
      a2 += wAt(w2 + k4) * xv;
      a3 += wAt(w3 + k4) * xv;
    }
    let s = bitcast<vec4<f32>>(vec4<u32>(w[s0 + g], w[s1 + g], w[s2 + g], w[s3 + g]));
    acc += vec4<f32>(dot(a0, one), dot(a1, one), dot(a2, one), dot(a3, one)) * s;
  }
  return acc;
#else
  for (var k4 = 0u; k4 < p.K4; k4++) {
    let xv = x[xi + k4];
    a0 += wAt(w0 + k4) * xv;
    a1 += wAt(w1 + k4) * xv;
    a2 += wAt(w2 + k4) * xv;
    a3 += wAt(w3 + k4) * xv;
  }
  return vec4<f32>(dot(a0, one), dot(a1, one), dot(a2, one), dot(a3, one));
#endif
}

// Whether expert id e lies in this dispatch's part (false for out-of-range ids too).
fn inPart(e: u32) -> bool {
  return e >= p.firstExpert && e - p.firstExpert < p.count;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.groups) {
    return;
  }
  // pair (expand) or row (combine) of this workgroup, and this invocation's first column
  let item = g / p.colBlocks;
  let n = ((g - item * p.colBlocks) * WG + lid.x) * 4u;
  if (n >= p.N) {
    return;
  }
#if COMBINE
  let row = item;
  var sum = vec4<f32>(0.0);
  for (var s = 0u; s < p.topK; s++) {
    let pair = row * p.topK + s;
    let e = ids[p.idsOff + pair];
    if (inPart(e)) {
      sum += routeWeights[p.rwOff + pair] * rowsDot(e - p.firstExpert, n, pair);
    }
  }
  let o = p.outOff + row * p.N + n;
  for (var j = 0u; j < 4u && n + j < p.N; j++) {
    if (p.addToOut != 0u) {
      out[o + j] += sum[j];
    } else {
      out[o + j] = sum[j];
    }
  }
#else
  let pair = item;
  let e = ids[p.idsOff + pair];
  var v: vec4<f32>;
  if (inPart(e)) {
    v = rowsDot(e - p.firstExpert, n, pair / p.topK);
  } else if (p.zeroUnrouted != 0u && e >= p.experts) {
    v = vec4<f32>(0.0);
  } else {
    return;
  }
  let o = p.outOff + pair * p.N + n;
  for (var j = 0u; j < 4u && n + j < p.N; j++) {
    out[o + j] = v[j];
  }
#endif
}
