// Records sampled tokens in the per-slot count table used by the penalties: one
// invocation per row adds 1 to counts[slot, token]. Each word holds the generated count
// in bits 0..30 and "seen in the prompt" in bit 31 (written by the host at admission).
// Rows with slot < 0 (no penalties) are skipped. Atomic, so two rows sharing a slot
// still count correctly.

struct Params {
  rows: u32,
  vocab: u32,
  slots: u32,
}

@group(0) @binding(0) var<storage, read> tokenIds: array<u32>;
@group(0) @binding(1) var<storage, read> rowSlots: array<i32>;
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= p.rows) {
    return;
  }
  let slot = rowSlots[row];
  let token = tokenIds[row];
  if (slot < 0 || u32(slot) >= p.slots || token >= p.vocab) {
    return;
  }
  atomicAdd(&counts[u32(slot) * p.vocab + token], 1u);
}
