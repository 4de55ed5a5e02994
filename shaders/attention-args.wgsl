// Shared by attention.wgsl and the CPU decode kernels (pulled in with #include): the
// params and the work-item record that src/kernels/attention-batch.ts writes for them all,
// and the logit soft-capping every one of them applies to its scores.
struct Params {
  n_items: u32,
  group: u32,        // n_heads / n_kv_heads
  n_kv_heads: u32,
  block_size: u32,
  q_stride: u32,     // floats per batch row of q: n_heads * HD, or a fused QKV row's width
  window: u32,       // sliding window in tokens, 0 = none
  scale: f32,
  out_stride: u32,   // floats per batch row of out: n_heads * HD
  softcap: f32,      // logit soft-capping (Gemma 2), 0 = none
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

// Gemma 2's attention logit soft-capping of a scaled score: cap * tanh(s / cap), applied
// before the mask and the softmax's running max; callers branch on p.softcap > 0 (uniform),
// so the uncapped path does no more work. The argument is clamped to +-15, where the f32
// tanh is already +-1: some implementations evaluate tanh through exp, which overflows to
// inf / inf = NaN for a large argument.
fn soft_cap(s: f32) -> f32 {
  return p.softcap * tanh(clamp(s / p.softcap, -15.0, 15.0));
}
