// KV-cache write: copies this step's new keys and values (f32, after RoPE) into their
// cache slots. One invocation per (row, kv head, dim); the cache is converted to its
// storage type (f16 or f32) on the way in.
//
// Cache layout, per layer and per tensor: [block][kvHead][slotInBlock][dim], so that one
// kv head's keys of a block are one contiguous run of blockSize * headDim values (the
// attention kernels read a block of one head at a time).
#if F16
enable f16;
#endif

struct Params {
  n: u32,            // rows * n_kv_heads * head_dim
  n_kv_heads: u32,
  head_dim: u32,
  block_size: u32,
  // row r of k_new starts at k_offset + r * row_stride (v_new likewise), so k and v can be
  // read inside a fused QKV row
  row_stride: u32,
  k_offset: u32,
  v_offset: u32,
}

@group(0) @binding(0) var<storage, read> k_new: array<f32>;
@group(0) @binding(1) var<storage, read> v_new: array<f32>;
@group(0) @binding(2) var<storage, read> slots: array<u32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<{{KV}}>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<{{KV}}>;
@group(1) @binding(0) var<uniform> p: Params;

#include kv-layout

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) {
    return;
  }
  let row_width = p.n_kv_heads * p.head_dim;
  let row = i / row_width;
  let within = i % row_width;
  let head = within / p.head_dim;
  let d = within % p.head_dim;
  let dst = cache_base(slots[row], head) + d;
  let src = row * p.row_stride + within;
  k_cache[dst] = {{KV}}(k_new[p.k_offset + src]);
  v_cache[dst] = {{KV}}(v_new[p.v_offset + src]);
}
