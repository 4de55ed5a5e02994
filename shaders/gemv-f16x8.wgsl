// Decode GEMV for f16 weights, eight output columns per invocation:
// out[r, n] = sum_k x[r, k] * W[n, k] (+ bias[n]) for a handful of rows (M <= 8).
//
// Same weight layout as gemv.wgsl (blocks of WB vec4 columns, each block K-major; f16
// parts have an even number of vec4 columns, see prepareMatmulWeight), but an invocation
// owns two adjacent vec4 columns and reads them as one 16-byte vec4<u32>, unpacked by lo and
// hi (matmul-args.wgsl). Why: on lavapipe every load in the k loop is a per-lane gather whose
// cost is per load more than per byte, and gemv.wgsl's vec4<f16> loads move 8 bytes each;
// this kernel moves 16 per W load and shares each x load across eight columns.
// K is not split (KS = 1): this is the CPU adapters' GEMV; GPUs keep gemv.wgsl. XLANE0 as
// in gemv.wgsl.

#if SID
enable subgroups;
#endif

#include activation-fns
#include matmul-args

const TM: u32 = {{TM}}u;
const WGN: u32 = {{WGN}}u;
const WB: u32 = {{WB}}u;

// two vec4<f16> columns per element
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;


// Four k steps of this lane's two vec4 columns, from W element wi on, wStep apart: the
// first columns (l) and the second (h), unpacked to f32.
struct Quad {
  l0: vec4<f32>,
  l1: vec4<f32>,
  l2: vec4<f32>,
  l3: vec4<f32>,
  h0: vec4<f32>,
  h1: vec4<f32>,
  h2: vec4<f32>,
  h3: vec4<f32>,
}

fn loadQuad(wi: u32, wStep: u32) -> Quad {
  let q0 = w[wi];
  let q1 = w[wi + wStep];
  let q2 = w[wi + 2u * wStep];
  let q3 = w[wi + 3u * wStep];
  return Quad(lo(q0), lo(q1), lo(q2), lo(q3), hi(q0), hi(q1), hi(q2), hi(q3));
}

// a quad's products with the four x values of its k steps, per column
fn loSum(q: Quad, xv: vec4<f32>) -> vec4<f32> {
  return q.l0 * xv.x + q.l1 * xv.y + q.l2 * xv.z + q.l3 * xv.w;
}

fn hiSum(q: Quad, xv: vec4<f32>) -> vec4<f32> {
  return q.h0 * xv.x + q.h1 * xv.y + q.h2 * xv.z + q.h3 * xv.w;
}

@compute @workgroup_size(WGN)
#if SID
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) sgs: u32) {
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
#if NORMX
  // the rows' 1 / RMS (NORMX, matmul-args.wgsl), before any lane leaves uniform control flow
  let inv = rowsInvRms(xRow, {{NORMLANES}});
#endif
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
    let ng = normAt(k + xLane);
    for (var r = 0u; r < TM; r++) {
      xs[r] = xAtWith(xRow[r], k + xLane, ng);
    }
    for (var s = 0u; s < 8u; s += 4u) {
      let q = loadQuad(wi, wStep);
      wi += 4u * wStep;
      for (var r = 0u; r < TM; r++) {
        let xr = xs[r];
        let xv = vec4<f32>(subgroupShuffle(xr, s), subgroupShuffle(xr, s + 1u), subgroupShuffle(xr, s + 2u), subgroupShuffle(xr, s + 3u));
        accLo[r] += loSum(q, xv);
        accHi[r] += hiSum(q, xv);
      }
    }
  }
#endif
  for (; k + 3u < p.K; k += 4u) {
    let q = loadQuad(wi, wStep);
    wi += 4u * wStep;
    for (var r = 0u; r < TM; r++) {
#if XLANE0
      let xv = xFromLane0(xRow[r], k, sid);
#else
      let xv = x4At(xRow[r], k);
#endif
      accLo[r] += loSum(q, xv);
      accHi[r] += hiSum(q, xv);
    }
  }
  for (; k < p.K; k++) {
    let q = w[wi];
    wi += wStep;
    for (var r = 0u; r < TM; r++) {
      let xk = xAt(xRow[r], k);
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
#if NORMX
    let sc = inv[r];
#else
    let sc = 1.0;
#endif
    let vLo = accLo[r] * sc + bLo;
    let vHi = accHi[r] * sc + bHi;
    for (var j = 0u; j < 4u; j++) {
      if (n + j < p.np) {
        put(o + j, vLo[j]);
      }
      if (n + 4u + j < p.np) {
        put(o + 4u + j, vHi[j]);
      }
    }
  }
}
