// Final-logit soft-capping (Gemma 2's final_logit_softcapping), in place over the first n
// f32 values: x[i] = soft_cap(x[i], cap) (soft-cap.wgsl).

struct Params {
  n: u32,
  cap: f32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

#include soft-cap

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) {
    return;
  }
  x[i] = soft_cap(x[i], p.cap);
}
