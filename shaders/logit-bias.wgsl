// logit_bias (OpenAI's parameter): adds a request's bias to chosen tokens' logits, in
// place, before the sampling kernel reads them. The host sends a flat list of
// (sampled row, token, bias) entries with no (row, token) pair twice, so no two
// invocations touch the same logit. A -100 bias bans a token in practice, +100 forces it.
// NaN and infinite logits stay what they are (NaN + b is NaN, inf + b is inf): the
// sampler masks them as it does without a bias.

struct Params {
  vocab: u32,
  count: u32,
  rows: u32,
}

struct Entry {
  row: u32,
  token: u32,
  bias: f32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> entries: array<Entry>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.count) {
    return;
  }
  let e = entries[i];
  // the wrapper checks both; this keeps a stale entry from ever writing past the rows
  if (e.row >= p.rows || e.token >= p.vocab) {
    return;
  }
  let o = e.row * p.vocab + e.token;
  logits[o] = logits[o] + e.bias;
}
