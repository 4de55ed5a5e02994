// Mixture-of-experts routing (Qwen3-MoE): for each row of router logits, the top_k experts
// by softmax probability, best first, and their weights (the probabilities, divided by
// their sum when NORMALIZE is set: norm_topk_prob).
//
// One workgroup per row. Each invocation owns experts lane, lane + WG, lane + 2 WG, ... and
// keeps them in registers, so the logits are read from memory once.
//
// The experts are ranked on their logits, not on the probabilities: softmax is monotonic,
// so the order is the same, but the logits are exact while f32 probabilities can round two
// neighbours to one value. Each logit becomes a u32 key whose integer order is the float
// order, and (key, expert) pairs are compared as integers: a higher key first, the lower
// expert on a tie. That order is strict, so round s of the selection picks the best pair
// ranked after round s - 1's pick, and nothing has to be marked as taken. The first pick's
// logit is the row's max, which the softmax subtracts for stability.
//
// SUBGROUP (CPU adapters): a workgroup is one subgroup of WG lanes on one row, and every
// reduction is a subgroup operation, with no workgroup memory and no barrier. On lavapipe
// a barrier is a coroutine switch for every SIMD batch of the workgroup, and the 64-wide
// workgroup's top_k rounds of tree reductions cost far more than the routing itself.
// (Four rows per 32-lane workgroup, one per subgroup, measured no faster than one per 8.)

#if SUBGROUP
enable subgroups;
#endif

struct Params {
  rows: u32,
  experts: u32,
  top_k: u32,
  normalize: u32,  // 1: divide the chosen probabilities by their sum
}

const WG: u32 = {{WG}}u;
// experts per invocation, a power of two with WG * PER_LANE >= experts
const PER_LANE: u32 = {{PER_LANE}}u;
const MAX_TOP_K: u32 = 32u;
// ranks ahead of every key, so that round 0 may pick any expert
const BEFORE_ALL_KEY: u32 = 0xffffffffu;
// ranks behind every key: what an invocation reports when it has no candidate left
const NO_KEY: u32 = 0u;
const NO_EXPERT: u32 = 0xffffffffu;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

// A u32 whose unsigned order is the float order of x (sign-magnitude to offset binary).
fn order_key(x: f32) -> u32 {
  var bits = bitcast<u32>(x);
  // -0 ties with +0, as their probabilities do
  if (bits == 0x80000000u) {
    bits = 0u;
  }
  // NaN ranks below -inf (key 0x007fffff), above NO_KEY, so a bad logit never displaces a
  // real one and every chosen id stays in range
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return 1u;
  }
  return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

fn key_value(key: u32) -> f32 {
  return bitcast<f32>(select(~key, key & 0x7fffffffu, (key & 0x80000000u) != 0u));
}

// Whether (key_a, expert_a) ranks ahead of (key_b, expert_b): higher logit, then lower expert.
fn ranks_ahead(key_a: u32, expert_a: u32, key_b: u32, expert_b: u32) -> bool {
  return key_a > key_b || (key_a == key_b && expert_a < expert_b);
}

#if SUBGROUP
// output slots per lane: lane s writes picks s, s + WG, s + 2 WG, ...
const SLOTS: u32 = (MAX_TOP_K + WG - 1u) / WG;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  // uniform across the workgroup, so the subgroup operations below stay in uniform control flow
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return;
  }
  let row_base = row * p.experts;

  var keys: array<u32, PER_LANE>;
  var lane_max = NO_KEY;
  for (var j = 0u; j < PER_LANE; j++) {
    let e = lane + j * WG;
    keys[j] = select(NO_KEY, order_key(logits[row_base + min(e, p.experts - 1u)]), e < p.experts);
    lane_max = max(lane_max, keys[j]);
  }

  // softmax denominator over all experts, relative to the max (round 0's pick)
  let max_logit = key_value(subgroupMax(lane_max));
  var sum = 0.0;
  for (var j = 0u; j < PER_LANE; j++) {
    if (lane + j * WG < p.experts) {
      sum += exp(key_value(keys[j]) - max_logit);
    }
  }
  let total = subgroupAdd(sum);

  // top_k rounds of a subgroup argmax over the pairs ranked after the previous pick: the
  // best key, then the lowest expert among the lanes that hold it
  var slot_keys: array<u32, SLOTS>;
  var slot_experts: array<u32, SLOTS>;
  var chosen_sum = 0.0;
  var prev_key = BEFORE_ALL_KEY;
  var prev_expert = 0u;
  for (var s = 0u; s < p.top_k; s++) {
    var best_key = NO_KEY;
    var best_expert = NO_EXPERT;
    for (var j = 0u; j < PER_LANE; j++) {
      let e = lane + j * WG;
      // experts rise with j, so a strict > keeps the lower expert of a tie
      if (keys[j] > best_key && ranks_ahead(prev_key, prev_expert, keys[j], e)) {
        best_key = keys[j];
        best_expert = e;
      }
    }
    prev_key = subgroupMax(best_key);
    prev_expert = subgroupMin(select(NO_EXPERT, best_expert, best_key == prev_key));
    chosen_sum += exp(key_value(prev_key) - max_logit) / total;
    for (var t = 0u; t < SLOTS; t++) {
      if (s == lane + t * WG) {
        slot_keys[t] = prev_key;
        slot_experts[t] = prev_expert;
      }
    }
  }
  if (p.normalize == 0u) {
    chosen_sum = 1.0;
  }

  for (var t = 0u; t < SLOTS; t++) {
    let slot = lane + t * WG;
    if (slot < p.top_k) {
      let out = row * p.top_k + slot;
      ids[out] = slot_experts[t];
      weights[out] = exp(key_value(slot_keys[t]) - max_logit) / total / chosen_sum;
    }
  }
}
#else
var<workgroup> best_keys: array<u32, WG>;
var<workgroup> best_experts: array<u32, WG>;
var<workgroup> partial_sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  // uniform across the workgroup, so returning here keeps the barriers below uniform
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return;
  }
  let row_base = row * p.experts;

  var keys: array<u32, PER_LANE>;
  for (var j = 0u; j < PER_LANE; j++) {
    let e = lane + j * WG;
    keys[j] = select(NO_KEY, order_key(logits[row_base + min(e, p.experts - 1u)]), e < p.experts);
  }

  // top_k rounds of a workgroup argmax over the pairs ranked after the previous pick
  var chosen_keys: array<u32, MAX_TOP_K>;
  var chosen_experts: array<u32, MAX_TOP_K>;
  var prev_key = BEFORE_ALL_KEY;
  var prev_expert = 0u;
  for (var s = 0u; s < p.top_k; s++) {
    var best_key = NO_KEY;
    var best_expert = NO_EXPERT;
    for (var j = 0u; j < PER_LANE; j++) {
      let e = lane + j * WG;
      // experts rise with j, so a strict > keeps the lower expert of a tie
      if (keys[j] > best_key && ranks_ahead(prev_key, prev_expert, keys[j], e)) {
        best_key = keys[j];
        best_expert = e;
      }
    }
    best_keys[lane] = best_key;
    best_experts[lane] = best_expert;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
      if (lane < stride && ranks_ahead(best_keys[lane + stride], best_experts[lane + stride], best_keys[lane], best_experts[lane])) {
        best_keys[lane] = best_keys[lane + stride];
        best_experts[lane] = best_experts[lane + stride];
      }
      workgroupBarrier();
    }
    prev_key = best_keys[0];
    prev_expert = best_experts[0];
    chosen_keys[s] = prev_key;
    chosen_experts[s] = prev_expert;
    // the next round's first writes must wait until every invocation has read the winner
    workgroupBarrier();
  }

  // softmax denominator over all experts, relative to the max (round 0's pick)
  let max_logit = key_value(chosen_keys[0]);
  var sum = 0.0;
  for (var j = 0u; j < PER_LANE; j++) {
    if (lane + j * WG < p.experts) {
      sum += exp(key_value(keys[j]) - max_logit);
    }
  }
  partial_sums[lane] = sum;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      partial_sums[lane] += partial_sums[lane + stride];
    }
    workgroupBarrier();
  }
  let total = partial_sums[0];

  // invocation s writes slot s (top_k <= MAX_TOP_K <= WG)
  if (lane >= p.top_k) {
    return;
  }
  var chosen_sum = 1.0;
  if (p.normalize != 0u) {
    chosen_sum = 0.0;
    for (var s = 0u; s < p.top_k; s++) {
      chosen_sum += exp(key_value(chosen_keys[s]) - max_logit) / total;
    }
  }
  let out = row * p.top_k + lane;
  ids[out] = chosen_experts[lane];
  weights[out] = exp(key_value(chosen_keys[lane]) - max_logit) / total / chosen_sum;
}
#endif
