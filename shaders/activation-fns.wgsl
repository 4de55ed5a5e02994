// The activation functions, shared (with #include) by activation.wgsl and by the matmul
// kernels' GATED x loads (matmul-args.wgsl), f32 in and out.
fn silu(v: f32) -> f32 {
  // exp(-v) overflows to +inf for v < -88: v / inf = -0, the right limit
  return v / (1.0 + exp(-v));
}

fn gelu_tanh(v: f32) -> f32 {
  // 0.5 * (1 + tanh(u)) == sigmoid(2u): no tanh of a large argument, which some
  // implementations evaluate as inf / inf = NaN
  let u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
  return v / (1.0 + exp(-2.0 * u));
}
