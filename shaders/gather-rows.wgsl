// Row gather: out[j, :] = src[indices[j], :]. The engine uses it to run the LM head only
// on the rows it samples from. An index past the last row writes zeros, never reads out
// of bounds.

struct Params {
  n: u32,        // output elements: count * dim
  dim: u32,
  src_rows: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) {
    return;
  }
  let j = i / p.dim;
  let d = i - j * p.dim;
  let r = indices[j];
  out[i] = select(0.0, src[min(r, p.src_rows - 1u) * p.dim + d], r < p.src_rows);
}
