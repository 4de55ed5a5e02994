// Shared (with #include) by kv-write.wgsl and rope-kv-write.wgsl: where a token's keys or
// values go in a cache tensor laid out [block][kvHead][slotInBlock][dim] (kvCacheIndex in
// src/kernels/kv-write.ts). Needs the kernel's params p with block_size, n_kv_heads and
// head_dim.

// element index of dim 0 of kv head `kv_head` at cache slot `slot`
fn cache_base(slot: u32, kv_head: u32) -> u32 {
  return ((slot / p.block_size * p.n_kv_heads + kv_head) * p.block_size + slot % p.block_size) * p.head_dim;
}
