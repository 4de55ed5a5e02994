// Bandwidth ceiling: every invocation streams vec4s of `src` and writes one sum (so the
// loads cannot be removed). Consecutive lanes read consecutive vec4s at each step, the
// same access pattern as the GEMV's weight loads.
struct Params {
  // vec4s in the binding, and invocations in the whole dispatch
  n4: u32,
  threads: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x;
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  var i = t;
  let s = p.threads;
  for (; i + 3u * s < p.n4; i += 4u * s) {
    a0 += src[i];
    a1 += src[i + s];
    a2 += src[i + 2u * s];
    a3 += src[i + 3u * s];
  }
  for (; i < p.n4; i += s) {
    a0 += src[i];
  }
  let v = a0 + a1 + a2 + a3;
  sink[t] = v.x + v.y + v.z + v.w;
}
