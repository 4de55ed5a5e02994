// Shared by the two CPU decode kernels (attention-decode.wgsl, attention-decode-dims.wgsl;
// pulled in with #include after attention-args): their bindings, K/V chunk loads and the
// paged-cache address of a key. Needs HD and the KV4 and F16 defines.
// Cache layout: [block][kvHead][slotInBlock][dim] (see src/kernels/kv-write.ts).

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<{{KV4}}>;
@group(0) @binding(2) var<storage, read> v_cache: array<{{KV4}}>;
@group(0) @binding(3) var<storage, read> block_tables: array<u32>;
@group(0) @binding(4) var<storage, read> items: array<WorkItem>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

// one vec4 chunk (four dims) of K or V: f16 caches hold it as a pair of u32
fn load_k(i: u32) -> vec4<f32> {
#if F16
  let w = k_cache[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
#else
  return k_cache[i];
#endif
}

fn load_v(i: u32) -> vec4<f32> {
#if F16
  let w = v_cache[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
#else
  return v_cache[i];
#endif
}

// vec4 index of key t's first dim for kv head kvh
fn key_base(it: WorkItem, kvh: u32, t: u32) -> u32 {
  let blk = block_tables[it.bt_off + t / p.block_size];
  return ((blk * p.n_kv_heads + kvh) * p.block_size + t % p.block_size) * (HD / 4u);
}

// the item's first visible key: its range's start, or the sliding window's (decode items
// hold one row, at pos0)
fn first_key(it: WorkItem) -> u32 {
  if (p.window > 0u && it.pos0 + 1u > p.window) {
    return max(it.k_start, it.pos0 + 1u - p.window);
  }
  return it.k_start;
}
