// Soft-capping, shared (with #include) by the attention kernels (Gemma 2's attention scores,
// applied before the mask and the softmax's running max) and softcap.wgsl (its final
// logits): cap * tanh(v / cap), which bounds v to (-cap, cap) and leaves small values almost
// unchanged. The argument is clamped to +-15, where the f32 tanh is already +-1: some
// implementations evaluate tanh through exp, which overflows to inf / inf = NaN for a large
// argument (a logit of 1e4 over a cap of 30).
fn soft_cap(v: f32, cap: f32) -> f32 {
  return cap * tanh(clamp(v / cap, -15.0, 15.0));
}
