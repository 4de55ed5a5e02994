// Grouped expert matmul of a mixture-of-experts layer: the pairs routed to one expert are
// computed together, so each load of the expert's weights feeds P pairs. moe-matmul.wgsl
// computes every pair on its own and re-reads the expert for each: at 16 tokens x top-8 of
// 16 experts, 128 pairs read 805 MB of f16 gate/up weights where the experts hold 101 MB.
//
// out[pair, n] = W_{ids[pair]}[n, :] . x[pair / ROW_DIV, :], where ROW_DIV is topK for
// the gate/up projection (x holds one row per token) and 1 for the down projection (x
// holds each pair's own activated row). The pairs come grouped by expert from moe-group:
// group e is order[offsets[e] .. offsets[e + 1]). A pair whose id is out of range is in no
// group, so its row of out is not written.
//
// W holds the experts of one part, [N][K] row-major each, as in moe-matmul.wgsl (WF16:
// halves packed two per u32, unpacked to f32; INT8: one u32 word of four int8 per vec4
// and the scales after the part's words, at sOff). One dispatch per part; the grid is
// (column blocks, experts of the part): a workgroup owns 4 * WG consecutive columns of one
// expert and walks its group P pairs at a time, each invocation owning four adjacent
// columns, so one pass over K loads 4 W vec4s and P x vec4s for 4 * P dot products. The
// last chunk takes only the pairs left, so a group of g pairs reads the expert ceil(g / P)
// times and computes g pairs, no more. An empty group returns at once.
//
// P = 8 against 4 and 2, f16, 16 tokens x top-8 of 16 experts (8 pairs per expert), old
// kernel time / this path's (moe-group included; + moe-sum for down), 2-core lavapipe
// shared with other work, min of 10 alternating runs (2026-12): gate/up (N 1536, K 2048)
// 2.3-2.7x, down (N 2048, K 768) 2.0-2.6x; P = 4 1.6x / 1.4x, P = 2 1.2x / 1.0x. At one
// token (one pair per group) it matches the old kernel for gate/up (0.95x) and is slower
// for down (0.8x: two more dispatches). Per-pair dot products into one vec4 of four
// columns beat vec4 partial sums per column by 1.1-1.2x (a quarter of the accumulators).
// INT8 against f16 at 16 tokens: 0.92-1.0x the time (gate/up and down, min of 10
// alternating runs, 2026-12): with 8 pairs per load the arithmetic bounds it, not W.

// XSHARE (CPU adapters with subgroups of >= 8 lanes): every lane of a workgroup reads the
// same x, and on lavapipe each of those loads is a per-lane gather, so x cost twice W's
// loads per step. Instead, XS k steps (vec4s) at a time, lane l of each subgroup loads
// x[pair's row, k4 + l % XS] once per pair and subgroupShuffle hands step s's vec4 (lane
// s's) to every lane, as the dense GEMM shares x (shaders/matmul.wgsl). The steps past the
// last whole XS (and the short int8 groups) load x per lane as before. f16, 16 tokens x
// top-8 of 16 experts, GPU time incl. moe-group (+ moe-sum for down), the two variants
// alternating in one process, 10 rounds, 2-core lavapipe (2026-12): gate/up (N 1536,
// K 2048) 47 against 93 ms (min), 1.9-2.0x; down (N 2048, K 768) 25 against 49 ms, 1.9-2.0x.
// The shuffles cost nothing measurable (left out, wrong sums, the same time); named
// registers instead of the pair loops were slower (every pair computed in a short chunk).
#if XSHARE
enable subgroups;
diagnostic(off, subgroup_uniformity);
#endif

struct Params {
  N: u32,
  K4: u32,          // K / 4: vec4s per row of W and of x
  rowDiv: u32,      // pair p reads row p / rowDiv of x: topK ('row' input) or 1 ('pair')
  firstExpert: u32, // this part's first expert: workgroup row wid.y is expert firstExpert + wid.y
  // element offsets of each tensor inside its binding (bindings start at the device's
  // storage offset alignment, tensors need not); xOff is in vec4s
  xOff: u32,
  offsetsOff: u32,
  orderOff: u32,
  outOff: u32,
  sOff: u32,        // INT8: the word where the part's scales start, [count][N][ceil(K / GS)] f32
}

const WG: u32 = {{WG}}u;
// pairs per chunk: each W load feeds P of them
const P: u32 = {{P}}u;
// XSHARE: k steps (vec4s) per shared x load
const XS: u32 = {{XS}}u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
// one of WF32, WF16 and INT8
#include moe-weights
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

// Pair j's sums for rows v0 .. v3 (columns n .. n + 3) at one k step.
fn quad(v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>, xv: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(dot(v0, xv), dot(v1, xv), dot(v2, xv), dot(v3, xv));
}

// Pairs order[c .. c + width) (width <= P) against rows n .. n + 3 of part-local expert
// el, written to their rows of out. Called with width = P for every full chunk, where the
// compiler can fold the `j < width` tests away once it inlines the call, and once with the
// remainder: a pair the chunk lacks costs neither loads nor arithmetic (at one token each
// group holds one pair, and computing P would cost P times the work on a CPU driver).
fn chunk(el: u32, n: u32, c: u32, width: u32, xLane: u32) {
  // rows past N re-read row N - 1 (their sums are never written)
  let base = el * p.N;
  let r0 = base + min(n, p.N - 1u);
  let r1 = base + min(n + 1u, p.N - 1u);
  let r2 = base + min(n + 2u, p.N - 1u);
  let r3 = base + min(n + 3u, p.N - 1u);
  let w0 = r0 * p.K4;
  let w1 = r1 * p.K4;
  let w2 = r2 * p.K4;
  let w3 = r3 * p.K4;
  var pair: array<u32, P>;
  var xi: array<u32, P>;
  for (var j = 0u; j < P; j++) {
    pair[j] = order[p.orderOff + c + min(j, width - 1u)];
    xi[j] = p.xOff + (pair[j] / p.rowDiv) * p.K4;
  }
  // a[j]: pair j's sums for columns n .. n + 3. Zeroed by an explicit initializer: a bare
  // `var a: T;` in a loop body kept the previous iteration's sums on Dawn + lavapipe
  // (2026-12), where WGSL zeroes it on every iteration
  var a = array<vec4<f32>, P>();
  // INT8 walks K group by group, scaling each W vec4 by its row's scale of the group as it
  // is loaded (per-group partial sums, as moe-matmul.wgsl keeps, would double the P pairs'
  // accumulators); the float path's extra braces stand for the group loop (one group, a
  // scale of 1 that the compiler folds away), so that both share the loops below
#if INT8
  let G = (p.K4 + GS4 - 1u) / GS4;
  for (var g = 0u; g < G; g++) {
    let s = bitcast<vec4<f32>>(vec4<u32>(w[p.sOff + r0 * G + g], w[p.sOff + r1 * G + g],
                                         w[p.sOff + r2 * G + g], w[p.sOff + r3 * G + g]));
    // the last group is shorter when GS does not divide K
    let kEnd = min((g + 1u) * GS4, p.K4);
    var k4 = g * GS4;
#else
  {
    let s = vec4<f32>(1.0);
    let kEnd = p.K4;
    var k4 = 0u;
#endif
#if XSHARE
    for (; k4 + XS <= kEnd; k4 += XS) {
      var xs: array<vec4<f32>, P>;
      for (var j = 0u; j < P; j++) {
        if (j < width) {
          xs[j] = x[xi[j] + k4 + xLane];
        }
      }
      for (var t = 0u; t < XS; t++) {
        let v0 = wAt(w0 + k4 + t) * s.x;
        let v1 = wAt(w1 + k4 + t) * s.y;
        let v2 = wAt(w2 + k4 + t) * s.z;
        let v3 = wAt(w3 + k4 + t) * s.w;
        for (var j = 0u; j < P; j++) {
          if (j < width) {
            a[j] += quad(v0, v1, v2, v3, subgroupShuffle(xs[j], t));
          }
        }
      }
    }
#endif
    for (; k4 < kEnd; k4++) {
      let v0 = wAt(w0 + k4) * s.x;
      let v1 = wAt(w1 + k4) * s.y;
      let v2 = wAt(w2 + k4) * s.z;
      let v3 = wAt(w3 + k4) * s.w;
      for (var j = 0u; j < P; j++) {
        if (j < width) {
          a[j] += quad(v0, v1, v2, v3, x[xi[j] + k4]);
        }
      }
    }
  }
  for (var j = 0u; j < width; j++) {
    let o = p.outOff + pair[j] * p.N + n;
    for (var col = 0u; col < 4u && n + col < p.N; col++) {
      out[o + col] = a[j][col];
    }
  }
}

@compute @workgroup_size(WG)
#if XSHARE
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
  let xLane = sid % XS;
#else
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let xLane = 0u;
#endif
  let e = p.firstExpert + wid.y;
  let begin = offsets[p.offsetsOff + e];
  let end = offsets[p.offsetsOff + e + 1u];
  // XSHARE: columns past N compute a clamped row and write nothing, so that every lane
  // stays in the loops for the shuffles
  let n = (wid.x * WG + lid.x) * 4u;
#if XSHARE
  if (begin >= end) {
    return;
  }
#else
  if (begin >= end || n >= p.N) {
    return;
  }
#endif
  var c = begin;
  for (; c + P <= end; c += P) {
    chunk(wid.y, n, c, P, xLane);
  }
  if (c < end) {
    chunk(wid.y, n, c, end - c, xLane);
  }
}
