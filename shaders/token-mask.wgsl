// Constrained decoding (response_format): sets the logits of the tokens a row's mask does
// not allow to MASKED, in place, after logit_bias and before the sampling kernel reads
// them. MASKED is finite (WGSL may assume no infinities) and below the sampler's -BIG
// (shaders/sample.wgsl), which counts a token at or below -BIG as masked: probability 0,
// never drawn, left out of the log-sum-exp, so logprobs are those of the masked distribution.
//
// The host sends, in one buffer: the logits row of each masked row ([count] u32), then the
// masks ([count, words] u32; bit (t % 32) of word t / 32 set = token t allowed). One
// invocation per (masked row, token); allowed logits are not touched.

struct Params {
  vocab: u32,
  words: u32,
  count: u32,
  rows: u32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> masks: array<u32>;
@group(1) @binding(0) var<uniform> p: Params;

const MASKED: f32 = -3.4e38;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.count * p.vocab) {
    return;
  }
  let m = i / p.vocab;
  let token = i - m * p.vocab;
  let bits = masks[p.count + m * p.words + (token >> 5u)];
  if ((bits & (1u << (token & 31u))) != 0u) {
    return;
  }
  let row = masks[m];
  // the wrapper checks it; this keeps a stale entry from ever writing past the rows
  if (row >= p.rows) {
    return;
  }
  logits[row * p.vocab + token] = MASKED;
}
