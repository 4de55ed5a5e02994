// Shared by attention.wgsl and the CPU decode kernels (pulled in with #include): the
// params and the work-item record that src/kernels/attention-batch.ts writes for them all.
struct Params {
  n_items: u32,
  group: u32,        // n_heads / n_kv_heads
  n_kv_heads: u32,
  block_size: u32,
  q_stride: u32,     // floats per batch row of q: n_heads * HD, or a fused QKV row's width
  window: u32,       // sliding window in tokens, 0 = none
  scale: f32,
  out_stride: u32,   // floats per batch row of out: n_heads * HD
  softcap: f32,      // logit soft-capping (Gemma 2, soft-cap.wgsl), 0 = none: kernels branch on it (uniform)
}

struct WorkItem {
  q_row0: u32,       // batch row of the item's first query row
  n_rows: u32,       // valid query rows (<= ROWS; 1 on the decode kernel)
  pos0: u32,         // absolute position of the first row
  bt_off: u32,       // offset of the sequence's block table in block_tables
  q_head0: u32,      // first query head (a multiple of HEADS)
  k_start: u32,      // key range [k_start, k_end) before the sliding window
  k_end: u32,
  // float offset of this item's partials: attention.wgsl and attention-decode-dims.wgsl
  // write out directly when it is NO_PARTIAL; attention-decode.wgsl's lane l writes at
  // partial + l * M * (HD + 2)
  partial: u32,
}

const NO_PARTIAL: u32 = 0xffffffffu;
