// Residual add: out[i] = a[i] + b[i]. Used after attention and after the MLP.
// Vectorised by 4 where the length allows, computed in f32 whatever the storage type.
#if F16
enable f16;
#endif

struct Params {
  n: u32,
}

@group(0) @binding(0) var<storage, read> a: array<{{T}}>;
@group(0) @binding(1) var<storage, read> b: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> out: array<{{T}}>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) {
    return;
  }
  out[i] = {{T}}(f32(a[i]) + f32(b[i]));
}
