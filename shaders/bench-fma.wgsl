// Arithmetic ceiling: register-only multiply-add chains. Eight independent vec4 chains per
// invocation hide the FMA latency; the operands come from params so nothing folds, and
// one sum per invocation is written so nothing is removed.
// FMA(c, a, b): the fma() builtin, or a multiply then an add as the matmul kernels write
// it (compilers may contract it to one FMA); the ceiling is the faster of the two.
#if MULADD
fn OP(c: vec4<f32>, a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
  return c * a + b;
}
#else
fn OP(c: vec4<f32>, a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
  return fma(c, a, b);
}
#endif

struct Params {
  iterations: u32,
  a: f32,
  b: f32,
}

@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let a = vec4<f32>(p.a);
  let b = vec4<f32>(p.b);
  let s = f32(gid.x) * 1e-9;
  var c0 = vec4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
  var c1 = c0 + 0.1;
  var c2 = c0 + 0.2;
  var c3 = c0 + 0.3;
  var c4 = c0 + 0.4;
  var c5 = c0 + 0.5;
  var c6 = c0 + 0.6;
  var c7 = c0 + 0.7;
  for (var i = 0u; i < p.iterations; i++) {
    c0 = OP(c0, a, b);
    c1 = OP(c1, a, b);
    c2 = OP(c2, a, b);
    c3 = OP(c3, a, b);
    c4 = OP(c4, a, b);
    c5 = OP(c5, a, b);
    c6 = OP(c6, a, b);
    c7 = OP(c7, a, b);
  }
  let v = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
  sink[gid.x] = v.x + v.y + v.z + v.w;
}
