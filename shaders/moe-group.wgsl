// Groups mixture-of-experts pairs by expert (a counting sort of the router's ids), so that
// the grouped expert matmul (moe-matmul-grouped.wgsl) reads each expert once per chunk of
// the pairs routed to it instead of once per pair.
//
// After it, order[offsets[e] .. offsets[e + 1]) lists the pairs p with ids[p] == e;
// offsets[0] = 0 and offsets[experts] is the number of pairs with an id in range. Ids at or
// past `experts` are in no group, and order past offsets[experts] is left as it was.
// Inside a group the order is whichever order the atomics placed the pairs in: it may
// change from run to run, which is harmless because every pair's output is computed on
// its own.
//
// One workgroup: a histogram of the ids in workgroup memory, an exclusive scan of it by
// invocation 0 (a sequential pass: at most BINS loads and stores, negligible beside the
// matmuls), then each pair takes the next slot of its group with an atomicAdd on the same
// array, which the scan left holding each group's start. BINS is `experts` rounded up to a
// power of two, at most 4096: 16 KiB, WebGPU's minimum maxComputeWorkgroupStorageSize, so
// the kernel declares no other workgroup memory.

struct Params {
  pairs: u32,
  experts: u32,
  // element offsets of each tensor inside its binding (bindings start at the device's
  // storage offset alignment, tensors need not)
  idsOff: u32,
  offsetsOff: u32,
  orderOff: u32,
}

const WG: u32 = {{WG}}u;
const BINS: u32 = {{BINS}}u;

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read_write> offsets: array<u32>;
@group(0) @binding(2) var<storage, read_write> order: array<u32>;
@group(1) @binding(0) var<uniform> p: Params;

// Counts per expert, then (after the scan) the next free slot of each group. Workgroup
// memory starts zeroed.
var<workgroup> bins: array<atomic<u32>, BINS>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lane: u32) {
  for (var i = lane; i < p.pairs; i += WG) {
    let e = ids[p.idsOff + i];
    if (e < p.experts) {
      atomicAdd(&bins[e], 1u);
    }
  }
  workgroupBarrier();
  if (lane == 0u) {
    var start = 0u;
    for (var e = 0u; e < p.experts; e++) {
      let count = atomicLoad(&bins[e]);
      atomicStore(&bins[e], start);
      offsets[p.offsetsOff + e] = start;
      start += count;
    }
    offsets[p.offsetsOff + p.experts] = start;
  }
  workgroupBarrier();
  for (var i = lane; i < p.pairs; i += WG) {
    let e = ids[p.idsOff + i];
    if (e < p.experts) {
      order[p.orderOff + atomicAdd(&bins[e], 1u)] = i;
    }
  }
}
