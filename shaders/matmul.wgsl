// Prefill GEMM: out[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]), any M, N, K.
//
// Register-blocked: each invocation accumulates a TM x (4 * TN4) block of out in registers.
// W is stored K-major ([K][ldw4] vec4s of columns, see prepareMatmulWeight), so at each k
// an invocation loads TN4 vec4s of W and the lanes of the workgroup read contiguous runs.
// All invocations of a workgroup share the same TM rows: the x reads depend only on the
// workgroup id and loop counters, so every lane reads the same address (a broadcast on
// GPUs, one scalar load on CPU backends such as lavapipe, instead of a per-lane gather).
// Each W vec4 loaded feeds 4 * TM multiply-adds; each x scalar feeds 4 * TN4.
#if WF16
enable f16;
#endif

struct Params {
  K: u32,
  np: u32,
  ldw4: u32,
  xOff: u32,
  ldx: u32,
  outOff: u32,
  ldo: u32,
  n0: u32,
  M: u32,
}

const TM: u32 = {{TM}}u;
const TN4: u32 = {{TN4}}u;
const WGN: u32 = {{WGN}}u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<vec4<{{WT}}>>;
#if BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#else
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
#endif
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(WGN)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  // vec4 column j of this invocation is c0 + j * WGN: lanes stay adjacent for every j
  let c0 = wid.x * WGN * TN4 + lid.x;
  let m0 = wid.y * TM;
  var acc: array<array<vec4<f32>, TN4>, TM>;
  var wCol: array<u32, TN4>;
  for (var j = 0u; j < TN4; j++) {
    wCol[j] = min(c0 + j * WGN, p.ldw4 - 1u);
    for (var r = 0u; r < TM; r++) {
      acc[r][j] = vec4<f32>(0.0);
    }
  }
  // rows past M re-read row M - 1 (uniform control flow); their sums are never written
  var xRow: array<u32, TM>;
  for (var r = 0u; r < TM; r++) {
    xRow[r] = p.xOff + min(m0 + r, p.M - 1u) * p.ldx;
  }
  var wRow = 0u;
  for (var k = 0u; k < p.K; k++) {
    var wv: array<vec4<f32>, TN4>;
    for (var j = 0u; j < TN4; j++) {
      wv[j] = vec4<f32>(w[wRow + wCol[j]]);
    }
    wRow += p.ldw4;
    for (var r = 0u; r < TM; r++) {
      let xv = x[xRow[r] + k];
      for (var j = 0u; j < TN4; j++) {
        acc[r][j] += wv[j] * xv;
      }
    }
  }
  for (var j = 0u; j < TN4; j++) {
    let c = c0 + j * WGN;
    let n = 4u * c;
    if (n >= p.np) {
      continue;
    }
    var b = vec4<f32>(0.0);
#if BIAS
    for (var e = 0u; e < 4u; e++) {
      if (n + e < p.np) {
        b[e] = bias[p.n0 + n + e];
      }
    }
#endif
    for (var r = 0u; r < TM; r++) {
      if (m0 + r >= p.M) {
        break;
      }
      let o = p.outOff + (m0 + r) * p.ldo + p.n0 + n;
      let v = acc[r][j] + b;
      for (var e = 0u; e < 4u; e++) {
        if (n + e < p.np) {
          out[o + e] = v[e];
        }
      }
    }
  }
}
