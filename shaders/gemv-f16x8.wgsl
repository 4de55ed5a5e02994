// Decode GEMV for f16 weights, eight output columns per invocation:
// out[r, n] = sum_k x[r, k] * W[n, k] (+ bias[n]) for a handful of rows (M <= 8).
//
// Same weight layout as gemv.wgsl (blocks of WB vec4 columns, each block K-major; f16
// parts have an even number of vec4 columns, see prepareMatmulWeight), but an invocation
// owns two adjacent vec4 columns and reads them as one 16-byte vec4<u32>, unpacked by lo and
// hi (matmul-args.wgsl). Why: on lavapipe every load in the k loop is a per-lane gather whose
// cost is per load more than per byte, and gemv.wgsl's vec4<f16> loads move 8 bytes each;
// this kernel moves 16 per W load and shares each x load across eight columns.
// K is not split (KS = 1): this is the CPU adapters' GEMV; GPUs keep gemv.wgsl.

#if XSHARE
enable subgroups;
#endif

#include activation-fns
#include matmul-args

const TM: u32 = {{TM}}u;
const WGN: u32 = {{WGN}}u;
const WB: u32 = {{WB}}u;

// two vec4<f16> columns per element
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;


@compute @workgroup_size(WGN)
#if XSHARE
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
#else
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
#endif
  // first of this invocation's two vec4 columns (clamped: past-the-end lanes re-read the last pair)
  let c4 = 2u * min(wid.x * WGN + lid.x, p.ldw4 / 2u - 1u);
  var accLo: array<vec4<f32>, TM>;
  var accHi: array<vec4<f32>, TM>;
  var xRow: array<u32, TM>;
  for (var r = 0u; r < TM; r++) {
    accLo[r] = vec4<f32>(0.0);
    accHi[r] = vec4<f32>(0.0);
    // rows past M (when M < TM) re-read the last row; their sums are never written
    xRow[r] = p.xOff + min(r, p.M - 1u) * p.ldx;
  }
  // in vec4<f16> columns, then halved to vec4<u32> pairs (block widths and c4 are even)
  let col = wColumn(c4, p.ldw4, WB);
  var wi = col.x / 2u;
  let wStep = col.y / 2u;
  var k = 0u;
#if XSHARE
  // eight k steps at a time, x shared across the subgroup (as in gemv.wgsl)
  let xLane = sid % 8u;
  for (; k + 8u <= p.K; k += 8u) {
    var xs: array<f32, TM>;
    for (var r = 0u; r < TM; r++) {
      xs[r] = xAt(xRow[r] + k + xLane);
    }
    for (var s = 0u; s < 8u; s += 4u) {
      let q0 = w[wi];
      let q1 = w[wi + wStep];
      let q2 = w[wi + 2u * wStep];
      let q3 = w[wi + 3u * wStep];
      wi += 4u * wStep;
      let l0 = lo(q0);
      let l1 = lo(q1);
      let l2 = lo(q2);
      let l3 = lo(q3);
      let h0 = hi(q0);
      let h1 = hi(q1);
      let h2 = hi(q2);
      let h3 = hi(q3);
      for (var r = 0u; r < TM; r++) {
        let xr = xs[r];
        let x0 = subgroupShuffle(xr, s);
        let x1 = subgroupShuffle(xr, s + 1u);
        let x2 = subgroupShuffle(xr, s + 2u);
        let x3 = subgroupShuffle(xr, s + 3u);
        accLo[r] += l0 * x0 + l1 * x1 + l2 * x2 + l3 * x3;
        accHi[r] += h0 * x0 + h1 * x1 + h2 * x2 + h3 * x3;
      }
    }
  }
#endif
  for (; k + 3u < p.K; k += 4u) {
    let q0 = w[wi];
    let q1 = w[wi + wStep];
    let q2 = w[wi + 2u * wStep];
    let q3 = w[wi + 3u * wStep];
    wi += 4u * wStep;
    let l0 = lo(q0);
    let l1 = lo(q1);
    let l2 = lo(q2);
    let l3 = lo(q3);
    let h0 = hi(q0);
    let h1 = hi(q1);
    let h2 = hi(q2);
    let h3 = hi(q3);
    for (var r = 0u; r < TM; r++) {
      let xi = xRow[r] + k;
      let xv = x4At(xi);
      accLo[r] += l0 * xv.x + l1 * xv.y + l2 * xv.z + l3 * xv.w;
      accHi[r] += h0 * xv.x + h1 * xv.y + h2 * xv.z + h3 * xv.w;
    }
  }
  for (; k < p.K; k++) {
    let q = w[wi];
    wi += wStep;
    for (var r = 0u; r < TM; r++) {
      let xk = xAt(xRow[r] + k);
      accLo[r] += lo(q) * xk;
      accHi[r] += hi(q) * xk;
    }
  }
  let n = 4u * c4;
  if (wid.x * WGN + lid.x >= p.ldw4 / 2u) {
    return;
  }
  var bLo = vec4<f32>(0.0);
  var bHi = vec4<f32>(0.0);
#if BIAS
  for (var j = 0u; j < 4u; j++) {
    if (n + j < p.np) {
      bLo[j] = bias[p.n0 + n + j];
    }
    if (n + 4u + j < p.np) {
      bHi[j] = bias[p.n0 + n + 4u + j];
    }
  }
#endif
  for (var r = 0u; r < TM; r++) {
    if (r >= p.M) {
      break;
    }
    let o = p.outOff + r * p.ldo + p.n0 + n;
    let vLo = accLo[r] + bLo;
    let vHi = accHi[r] + bHi;
    for (var j = 0u; j < 4u; j++) {
      if (n + j < p.np) {
        out[o + j] = vLo[j];
      }
      if (n + 4u + j < p.np) {
        out[o + 4u + j] = vHi[j];
      }
    }
  }
}
