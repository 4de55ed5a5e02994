// Activations, f32 in and out.
//
// GATED (SwiGLU / GeGLU): each input row holds [gate (inner values) | up (inner values)],
// the layout of a fused gate_up projection; out[row, c] = act(gate[c]) * up[c], so the
// output has half the input's width. Otherwise elementwise: out[i] = act(x[i]).
// ACT is silu or gelu_tanh.

struct Params {
  n: u32,      // output elements
  inner: u32,  // output row width (the intermediate size) when GATED
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

#include activation-fns

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) {
    return;
  }
#if GATED
  let row = i / p.inner;
  let c = i - row * p.inner;
  let gate = x[row * 2u * p.inner + c];
  let up = x[row * 2u * p.inner + p.inner + c];
  out[i] = {{ACT}}(gate) * up;
#else
  out[i] = {{ACT}}(x[i]);
#endif
}
