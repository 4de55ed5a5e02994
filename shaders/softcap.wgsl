// Final-logit soft-capping (Gemma 2's final_logit_softcapping), in place over the first n
// f32 values: x[i] = cap * tanh(x[i] / cap), which bounds logits to (-cap, cap) and leaves
// small ones almost unchanged.
//
// tanh's argument is clamped to +-15, where the f32 tanh is already +-1: some
// implementations evaluate tanh through exp, which overflows to inf / inf = NaN for a
// large argument (a logit of 1e4 over a cap of 30), and an infinite logit would give NaN.

struct Params {
  n: u32,
  cap: f32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) {
    return;
  }
  x[i] = p.cap * tanh(clamp(x[i] / p.cap, -15.0, 15.0));
}
