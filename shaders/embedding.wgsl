// Embedding gather from one row-range part of a table: out[r, :] = table[ids[r], :] for
// the rows whose id falls in [row_start, row_start + row_count).
//
// A table larger than one storage binding (128 MiB on lavapipe) is split into parts and
// gathered with one dispatch per part; each output row is written by exactly one of them,
// and the dispatch with zero_out_of_range = 1 also writes zeros for ids >= vocab (ids are
// validated upstream, but a bad one must never read out of bounds).
//
// F16 tables are read as packed u32 words through unpack2x16float, so they work on
// adapters without shader-f16 too.

struct Params {
  rows: u32,
  dim: u32,
  row_start: u32,
  row_count: u32,
  vocab: u32,
  zero_out_of_range: u32,
}

@group(0) @binding(0) var<storage, read> ids: array<u32>;
#if F16
@group(0) @binding(1) var<storage, read> table: array<u32>;
#else
@group(0) @binding(1) var<storage, read> table: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

fn load(e: u32) -> f32 {
#if F16
  let pair = unpack2x16float(table[e >> 1u]);
  return select(pair.x, pair.y, (e & 1u) == 1u);
#else
  return table[e];
#endif
}

// one workgroup per output row; its 64 invocations stride over the row
@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return;
  }
  let id = ids[row];
  let dst = row * p.dim;
  if (id >= p.row_start && id - p.row_start < p.row_count) {
    let src = (id - p.row_start) * p.dim;
    for (var d = li; d < p.dim; d += 64u) {
      out[dst + d] = load(src + d);
    }
  } else if (p.zero_out_of_range == 1u && id >= p.vocab) {
    for (var d = li; d < p.dim; d += 64u) {
      out[dst + d] = 0.0;
    }
  }
}
