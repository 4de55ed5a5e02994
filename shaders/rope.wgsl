// Rotary position embedding, in place on f32 rows of n_heads heads of head_dim values.
//
// One invocation per (row, head, pair). Only the first rotary_dim values of each head
// rotate (partial rotary); the rest are left untouched. Pair i (0 <= i < rotary_dim / 2)
// turns by the angle position * inv_freq[i]:
//   half (NeoX / Llama / Qwen, HF rotate_half):   values (i, i + rotary_dim / 2)
//   INTERLEAVED (GLM: cos/sin repeat_interleave(2) and rotate_half on (2i, 2i + 1)):
//                                                 values (2i, 2i + 1)
//   a' = a cos - b sin,   b' = b cos + a sin
// Row r of x starts at offset + r * row_stride, so q and k can be rotated inside a fused
// QKV row.

struct Params {
  n: u32,          // rows * n_heads * rotary_dim / 2
  n_heads: u32,
  head_dim: u32,
  half_rotary: u32,
  row_stride: u32,
  offset: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

#include rope-angle

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) {
    return;
  }
  let pair = i % p.half_rotary;
  let head_row = i / p.half_rotary;
  let head = head_row % p.n_heads;
  let row = head_row / p.n_heads;
  let base = p.offset + row * p.row_stride + head * p.head_dim;
#if INTERLEAVED
  let ia = base + 2u * pair;
  let ib = ia + 1u;
#else
  let ia = base + pair;
  let ib = ia + p.half_rotary;
#endif
  // the angle is rounded to f32 before cos/sin, as transformers computes it
  let angle = reduce_angle(f32(positions[row]) * inv_freq[pair]);
  let c = cos(angle);
  let s = sin(angle);
  let a = x[ia];
  let b = x[ib];
  x[ia] = a * c - b * s;
  x[ib] = b * c + a * s;
}
