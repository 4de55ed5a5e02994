// Shared by the GEMV kernels gemv.wgsl and gemv-i8.wgsl (#include after their TM, WGN, KS
// and partial): the four k steps of a vec4 column each lane works on (filled by the
// kernel's own load), and the end of a GEMV.
// Four k steps of a lane's vec4 column, as f32.
struct Quad {
  w0: vec4<f32>,
  w1: vec4<f32>,
  w2: vec4<f32>,
  w3: vec4<f32>,
}

// a quad's products with the four x values of its k steps
fn quadSum(q: Quad, xv: vec4<f32>) -> vec4<f32> {
  return q.w0 * xv.x + q.w1 * xv.y + q.w2 * xv.z + q.w3 * xv.w;
}

// The end of a GEMV, from each invocation's sums of its TM rows for vec4 column c4. With
// SPLITK the KS invocation rows of a workgroup hold partial sums over their share of k,
// added up through workgroup memory by invocation row 0 (call it from uniform control flow:
// it has a barrier). Then the bias is added and each of the M rows' four columns written,
// those past the part's np left alone.
fn storeColumns(sums: array<vec4<f32>, TM>, c4: u32, lid: vec3<u32>) {
  var acc = sums;
#if SPLITK
  for (var r = 0u; r < TM; r++) {
    partial[(lid.y * TM + r) * WGN + lid.x] = acc[r];
  }
  workgroupBarrier();
  if (lid.y != 0u) {
    return;
  }
  for (var s = 1u; s < KS; s++) {
    for (var r = 0u; r < TM; r++) {
      acc[r] += partial[(s * TM + r) * WGN + lid.x];
    }
  }
#endif
  let n = 4u * c4;
  if (n >= p.np) {
    return;
  }
  var b = vec4<f32>(0.0);
#if BIAS
  for (var j = 0u; j < 4u; j++) {
    if (n + j < p.np) {
      b[j] = bias[p.n0 + n + j];
    }
  }
#endif
  for (var r = 0u; r < TM; r++) {
    if (r >= p.M) {
      break;
    }
    let o = p.outOff + r * p.ldo + p.n0 + n;
    let v = acc[r] + b;
    for (var j = 0u; j < 4u; j++) {
      if (n + j < p.np) {
        put(o + j, v[j]);
      }
    }
  }
}
