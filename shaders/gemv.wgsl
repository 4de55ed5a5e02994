// Decode GEMV: out[r, n] = sum_k x[r, k] * W[n, k] (+ bias[n]) for a handful of rows
// (M <= 8, all TM rows in every invocation's registers).
//
// W is stored K-major in blocks of WB vec4 columns (prepareMatmulWeight re-lays it out at
// load; each block is [K][its width] vec4s, the blocks one after another), so an
// invocation owns four adjacent output columns and, at each k, the lanes of a workgroup
// read one contiguous run of W: a vector load per lane, coalesced across lanes, and a
// workgroup of WB lanes streams one contiguous block.
// XV4 (K and x's offset multiples of 4, KS = 1) reads x as vec4s: one load per four k
// steps instead of four. On lavapipe every load in the k loop is a per-lane gather that
// costs several instructions per element, so the loop is bound by its load count, not by
// bandwidth: W's vec4 plus x's scalar made 8 loads per 4 k-steps, this makes 5.
//
// XLANE0 (XV4, KS = 1, x not shared): x's vec4 is the same for every lane, so only lane 0
// of each subgroup loads it and subgroupBroadcast hands it round (xFromLane0,
// matmul-args.wgsl): lavapipe's per-lane load loop then loads once instead of eight times.
// SID is set with either, and with NORMX's subgroup sums (matmul-args.wgsl): the kernel
// takes its subgroup lane and size.
//
// KS > 1 splits K across the workgroup's y dimension (interleaved by k) and reduces the
// partial sums in workgroup memory: more parallelism for GPUs where N / 4 invocations
// would leave most of the chip idle.
#if WF16
enable f16;
#endif
#if SID
enable subgroups;
#endif

#include activation-fns
#include matmul-args

const TM: u32 = {{TM}}u;
const WGN: u32 = {{WGN}}u;
const KS: u32 = {{KS}}u;
const WB: u32 = {{WB}}u;

@group(0) @binding(1) var<storage, read> w: array<vec4<{{WT}}>>;

#if SPLITK
var<workgroup> partial: array<vec4<f32>, {{PARTIALS}}>;
#endif
#include gemv-common

// Four k steps of this lane's vec4 column, from W element wi on, wStep apart, as f32.
fn loadQuad(wi: u32, wStep: u32) -> Quad {
  return Quad(vec4<f32>(w[wi]), vec4<f32>(w[wi + wStep]), vec4<f32>(w[wi + 2u * wStep]), vec4<f32>(w[wi + 3u * wStep]));
}

@compute @workgroup_size(WGN, KS)
#if SID
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) sgs: u32) {
#else
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
#endif
  let c4 = wid.x * WGN + lid.x;
  // out-of-range columns still load (a clamped column) so that every lane reaches the barrier
  let cl = min(c4, p.ldw4 - 1u);
  var acc: array<vec4<f32>, TM>;
  for (var r = 0u; r < TM; r++) {
    acc[r] = vec4<f32>(0.0);
  }
  // rows past M (when M < TM) re-read the last row; their sums are never written
  var xRow: array<u32, TM>;
  for (var r = 0u; r < TM; r++) {
    xRow[r] = p.xOff + min(r, p.M - 1u) * p.ldx;
  }
#if NORMX
  // the rows' 1 / RMS (NORMX, matmul-args.wgsl), before any lane leaves uniform control flow
  let inv = rowsInvRms(xRow, {{NORMLANES}});
#endif
#if SPLITK
  var k = lid.y;
#else
  // KS = 1: lid.y is 0, written as a constant so that the loop stays subgroup-uniform
  var k = 0u;
#endif
  // unrolled by 4 k-steps: independent loads in flight, fewer loop tests
  let step = 4u * KS;
  let col = wColumn(cl, p.ldw4, WB);
  var wi = col.x + k * col.y;
  let wStep = KS * col.y;
#if XSHARE
  // (KS = 1) eight k steps at a time: lane l of each subgroup loads x[row, k + l % 8] and
  // subgroupShuffle hands step s lane s's value, one x load per row per eight steps instead
  // of one vec4 per four (see XSHARE in matmul.wgsl)
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
        acc[r] += quadSum(q, vec4<f32>(subgroupShuffle(xr, s), subgroupShuffle(xr, s + 1u), subgroupShuffle(xr, s + 2u), subgroupShuffle(xr, s + 3u)));
      }
    }
  }
#endif
  for (; k + 3u * KS < p.K; k += step) {
    let q = loadQuad(wi, wStep);
    wi += 4u * wStep;
    for (var r = 0u; r < TM; r++) {
      let xr = xRow[r];
#if XV4
#if XLANE0
      acc[r] += quadSum(q, xFromLane0(xr, k, sid));
#else
      acc[r] += quadSum(q, x4At(xr, k));
#endif
#else
      acc[r] += quadSum(q, vec4<f32>(xAt(xr, k), xAt(xr, k + KS), xAt(xr, k + 2u * KS), xAt(xr, k + 3u * KS)));
#endif
    }
  }
  for (; k < p.K; k += KS) {
    let w0 = vec4<f32>(w[wi]);
    wi += wStep;
    for (var r = 0u; r < TM; r++) {
      acc[r] += w0 * xAt(xRow[r], k);
    }
  }
#if NORMX
  for (var r = 0u; r < TM; r++) {
    acc[r] *= inv[r];
  }
#endif
  storeColumns(acc, c4, lid);
}
