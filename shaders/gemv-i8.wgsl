// Decode GEMV for int8 weights: out[r, n] = sum_k x[r, k] * W[n, k] (+ bias[n]) for a
// handful of rows (M <= 8, all TM rows in every invocation's registers), W[n, k] = q * s
// with one scale s per column and group of GS k steps (int8-quant.ts).
//
// An invocation owns four adjacent output columns, as in gemv.wgsl, and each 16-byte W load
// gives it four k steps of them (int8-weights.wgsl): a quarter of gemv.wgsl's f32 loads for
// the same k. The int8 values become f32 in registers; each group's products are summed
// unscaled and multiplied by the group's scales once, at its end.
// XV4 (K and x's offset multiples of 4) reads x as vec4s; XSHARE (KS = 1) shares x across
// the subgroup over eight k steps, as gemv.wgsl does. KS > 1 splits the groups across the
// workgroup's y dimension and reduces the partial sums in workgroup memory (GPUs).
#if SID
enable subgroups;
#endif

#include activation-fns
#include matmul-args
#include int8-weights

const TM: u32 = {{TM}}u;
const WGN: u32 = {{WGN}}u;
const KS: u32 = {{KS}}u;
const WB: u32 = {{WB}}u;

#if SPLITK
var<workgroup> partial: array<vec4<f32>, {{PARTIALS}}>;
#endif
#include gemv-common

// Four k steps of this lane's vec4 column, unpacked.
fn unpackQuad(q: vec4<u32>) -> Quad {
  return Quad(i8x4(q.x), i8x4(q.y), i8x4(q.z), i8x4(q.w));
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
  // rows past M (when M < TM) re-read the last row; their sums are never written
  var xRow: array<u32, TM>;
  for (var r = 0u; r < TM; r++) {
    acc[r] = vec4<f32>(0.0);
    xRow[r] = p.xOff + min(r, p.M - 1u) * p.ldx;
  }
#if NORMX
  // the rows' 1 / RMS (NORMX, matmul-args.wgsl), before any lane leaves uniform control flow
  let inv = rowsInvRms(xRow, {{NORMLANES}});
#endif
  let K4 = kQuads();
  let G = groups();
  let col = blockColumn(cl, p.ldw4, K4);
  let sc = blockColumn(cl, p.ldw4, G);
  let sBase = K4 * p.ldw4 + sc.x;
#if XSHARE
  // KS = 1: lid.y is 0, written as a constant so that the loop stays subgroup-uniform
  let xLane = sid % 8u;
  for (var g = 0u; g < G; g++) {
#else
  for (var g = lid.y; g < G; g += KS) {
#endif
    // k steps [k, kEnd) of group g (k a multiple of 4: GS is a multiple of 8)
    var k = g * GS;
    let kEnd = min(k + GS, p.K);
    var wi = col.x + (k / 4u) * col.y;
    var part: array<vec4<f32>, TM>;
    for (var r = 0u; r < TM; r++) {
      part[r] = vec4<f32>(0.0);
    }
#if XSHARE
    // eight k steps at a time: lane l of each subgroup loads x[row, k + l % 8] and
    // subgroupShuffle hands step s lane s's value (see XSHARE in matmul.wgsl)
    for (; k + 8u <= kEnd; k += 8u) {
      var xs: array<f32, TM>;
      let ng = normAt(k + xLane);
      for (var r = 0u; r < TM; r++) {
        xs[r] = xAtWith(xRow[r], k + xLane, ng);
      }
      for (var s = 0u; s < 8u; s += 4u) {
        let q = unpackQuad(w[wi]);
        wi += col.y;
        for (var r = 0u; r < TM; r++) {
          let xr = xs[r];
          part[r] += quadSum(q, vec4<f32>(subgroupShuffle(xr, s), subgroupShuffle(xr, s + 1u), subgroupShuffle(xr, s + 2u), subgroupShuffle(xr, s + 3u)));
        }
      }
    }
#endif
    for (; k + 4u <= kEnd; k += 4u) {
      let q = unpackQuad(w[wi]);
      wi += col.y;
      for (var r = 0u; r < TM; r++) {
        let xr = xRow[r];
#if XV4
        part[r] += quadSum(q, x4At(xr, k));
#else
        part[r] += quadSum(q, vec4<f32>(xAt(xr, k), xAt(xr, k + 1u), xAt(xr, k + 2u), xAt(xr, k + 3u)));
#endif
      }
    }
    if (k < kEnd) {
      // K's last, partial quad (K not a multiple of 4): W is zero past K, but x there is
      // the next row's or past the binding, so those steps read x[K - 1] and are masked
      let q = unpackQuad(w[wi]);
      let last = p.K - 1u;
      for (var r = 0u; r < TM; r++) {
        let xr = xRow[r];
        let xv = vec4<f32>(
          xAt(xr, k),
          select(0.0, xAt(xr, min(k + 1u, last)), k + 1u < p.K),
          select(0.0, xAt(xr, min(k + 2u, last)), k + 2u < p.K),
          0.0,
        );
        part[r] += quadSum(q, xv);
      }
    }
    let s = scaleAt(sBase + g * sc.y);
    for (var r = 0u; r < TM; r++) {
      acc[r] += part[r] * s;
    }
  }
#if NORMX
  for (var r = 0u; r < TM; r++) {
    acc[r] *= inv[r];
  }
#endif
  storeColumns(acc, c4, lid);
}
