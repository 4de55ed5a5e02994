// RoPE of a fused QKV row's q and k heads and the write of its k and v heads into the paged
// KV cache, in one dispatch (rope.wgsl then kv-write.wgsl did the same in two; on lavapipe
// each dispatch costs about 0.1 ms whatever it does, and a decode step has one per layer).
//
// Row r of x starts at r * row_stride and holds [q heads | k heads | v heads | ...], each
// head head_dim values. One invocation per (row, head, pair of values), pairs as rope.wgsl
// rotates them (half: (i, i + rotary_dim / 2), INTERLEAVED: (2i, 2i + 1)) inside the first
// rotary_dim values, consecutive pairs past them. q and k pairs inside the rotary part turn
// in place; every k and v pair is then stored to its cache slot, converted to the cache's
// type. Cache layout as kv-write.wgsl: [block][kvHead][slotInBlock][dim].
#if F16
enable f16;
#endif

struct Params {
  n: u32,           // rows * (n_heads + 2 * n_kv_heads) * head_dim / 2
  n_heads: u32,     // q heads
  n_kv_heads: u32,
  head_dim: u32,
  half_rotary: u32,
  row_stride: u32,
  block_size: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read> slots: array<u32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<{{KV}}>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<{{KV}}>;
@group(1) @binding(0) var<uniform> p: Params;

#include rope-angle
#include kv-layout

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) {
    return;
  }
  let half_head = p.head_dim / 2u;
  let heads = p.n_heads + 2u * p.n_kv_heads;
  let pair = i % half_head;
  let head_row = i / half_head;
  let head = head_row % heads;
  let row = head_row / heads;
  let base = row * p.row_stride + head * p.head_dim;
  let rotates = head < p.n_heads + p.n_kv_heads && pair < p.half_rotary;
  // element offsets of this pair inside its head
  var da: u32;
  var db: u32;
  if (rotates) {
#if INTERLEAVED
    da = 2u * pair;
    db = da + 1u;
#else
    da = pair;
    db = pair + p.half_rotary;
#endif
  } else {
    if (head < p.n_heads) {
      return; // q values past the rotary part stay as they are
    }
    // k past the rotary part (pair >= half_rotary, so 2 * pair >= rotary_dim), or v (all
    // of it): consecutive pairs
    da = 2u * pair;
    db = da + 1u;
  }
  var a = x[base + da];
  var b = x[base + db];
  if (rotates) {
    // the angle is rounded to f32 before cos/sin, as transformers computes it
    let angle = reduce_angle(f32(positions[row]) * inv_freq[pair]);
    let c = cos(angle);
    let s = sin(angle);
    let a2 = a * c - b * s;
    b = b * c + a * s;
    a = a2;
    x[base + da] = a;
    x[base + db] = b;
  }
  if (head < p.n_heads) {
    return;
  }
  let kv = head - p.n_heads;
  let dst = cache_base(slots[row], kv % p.n_kv_heads);
  if (kv < p.n_kv_heads) {
    k_cache[dst + da] = {{KV}}(a);
    k_cache[dst + db] = {{KV}}(b);
  } else {
    v_cache[dst + da] = {{KV}}(a);
    v_cache[dst + db] = {{KV}}(b);
  }
}
