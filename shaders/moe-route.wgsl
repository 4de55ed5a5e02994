// Mixture-of-experts routing: for each row of router logits, the top_k experts, best first,
// and their routing weights. Two scorings:
//
// softmax (Qwen2/3-MoE): the experts' probabilities over the row; the weights are the chosen
// probabilities, divided by their sum when NORMALIZE is set (norm_topk_prob).
//
// SIGMOID (GLM-4.5, DeepSeek-V3: transformers' DeepseekV3TopkRouter): each expert's own
// score sigmoid(logit). The experts are chosen on score + bias (HAS_BIAS:
// e_score_correction_bias), but weighted by the unbiased score, divided by the chosen
// scores' sum + 1e-20 when normalize is set. With groups > 1 the choice is group-limited:
// the experts split into `groups` contiguous groups, a group scores the sum of its two best
// choice values, and the experts outside the topk_group best groups choose with 0.0 (the
// masked_fill of transformers: not -inf, so a masked expert still beats a negative choice).
//
// Both multiply the weights by `scale` last (routed_scaling_factor).
//
// One workgroup per row. Each invocation owns experts lane, lane + WG, lane + 2 WG, ... and
// keeps them in registers, so the logits are read from memory once (the sigmoid weights
// re-read the top_k chosen logits).
//
// The experts are ranked on exact f32 values: softmax on its logits, not on the
// probabilities (softmax is monotonic, so the order is the same, but f32 probabilities can
// round two neighbours to one value); sigmoid on the choice values themselves (score + bias
// is not monotonic in the logit). Each value becomes a u32 key whose integer order is the
// float order, and (key, expert) pairs are compared as integers: a higher key first, the
// lower expert on a tie. That order is strict, so round s of the selection picks the best
// pair ranked after round s - 1's pick, and nothing has to be marked as taken. With softmax
// the first pick's logit is the row's max, which the softmax subtracts for stability.
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
  normalize: u32,  // 1: divide the chosen weights by their sum
  groups: u32,     // SIGMOID: expert groups of the group-limited choice, 1 for none
  topk_group: u32, // SIGMOID: the groups whose experts keep their choice values
  scale: f32,      // multiplies every weight last
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
#if HAS_BIAS
@group(0) @binding(3) var<storage, read> bias: array<f32>;
#endif
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

// Whether (key_a, expert_a) ranks ahead of (key_b, expert_b): higher value, then lower expert.
fn ranks_ahead(key_a: u32, expert_a: u32, key_b: u32, expert_b: u32) -> bool {
  return key_a > key_b || (key_a == key_b && expert_a < expert_b);
}

#if SIGMOID
const MAX_GROUPS: u32 = 32u;
// what transformers adds to the chosen scores' sum before dividing by it
const NORM_EPSILON: f32 = 1e-20;

// expert e's score, its routing weight before normalisation
fn sigmoid_score(row_base: u32, e: u32) -> f32 {
  return 1.0 / (1.0 + exp(-logits[row_base + e]));
}
#endif

// The key expert e (< experts) is chosen on.
fn choice_key(row_base: u32, e: u32) -> u32 {
#if SIGMOID
#if HAS_BIAS
  return order_key(sigmoid_score(row_base, e) + bias[e]);
#else
  return order_key(sigmoid_score(row_base, e));
#endif
#else
  return order_key(logits[row_base + e]);
#endif
}

// The two best keys of the row, given each invocation's two best (first >= second).
#if SUBGROUP
fn top_two(lane: u32, first: u32, second: u32) -> vec2<u32> {
  let best = subgroupMax(first);
  let best_lane = subgroupMin(select(NO_EXPERT, lane, first == best));
  // the runner-up is the best lane's second or another lane's first
  return vec2(best, subgroupMax(select(first, second, lane == best_lane)));
}
#else
var<workgroup> best_keys: array<u32, WG>;
var<workgroup> best_experts: array<u32, WG>;
var<workgroup> partial_sums: array<f32, WG>;

#if SIGMOID
var<workgroup> second_keys: array<u32, WG>;

fn top_two(lane: u32, first: u32, second: u32) -> vec2<u32> {
  best_keys[lane] = first;
  second_keys[lane] = second;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      let a = best_keys[lane];
      let b = best_keys[lane + stride];
      best_keys[lane] = max(a, b);
      second_keys[lane] = max(min(a, b), max(second_keys[lane], second_keys[lane + stride]));
    }
    workgroupBarrier();
  }
  let two = vec2(best_keys[0], second_keys[0]);
  // the next call's first writes must wait until every invocation has read the result
  workgroupBarrier();
  return two;
}
#endif
#endif

#if SIGMOID
// The group-limited choice: the choice keys of the experts outside the topk_group best
// groups become 0.0's. Every invocation computes every group's score (the reductions hand
// each the same values), so each can mask its own experts.
fn limit_groups(lane: u32, keys: ptr<function, array<u32, PER_LANE>>) {
  let group_size = p.experts / p.groups;
  var group_keys: array<u32, MAX_GROUPS>;
  for (var g = 0u; g < p.groups; g++) {
    // this invocation's two best in group g: experts lane + j WG in [g, g + 1) * group_size
    var first = NO_KEY;
    var second = NO_KEY;
    let j_end = ((g + 1u) * group_size + WG - 1u - lane) / WG;
    for (var j = (g * group_size + WG - 1u - lane) / WG; j < j_end; j++) {
      let key = (*keys)[j];
      second = max(second, min(first, key));
      first = max(first, key);
    }
    let two = top_two(lane, first, second);
    // a group of at least two experts: both are real keys (or NaN's, which rank last)
    group_keys[g] = order_key(key_value(two.x) + key_value(two.y));
  }
  // group g is picked when fewer than topk_group groups rank ahead of it (ties: lower group)
  var picked = 0u;
  for (var g = 0u; g < p.groups; g++) {
    var ahead = 0u;
    for (var h = 0u; h < p.groups; h++) {
      ahead += u32(ranks_ahead(group_keys[h], h, group_keys[g], g));
    }
    picked |= select(0u, 1u << g, ahead < p.topk_group);
  }
  let masked_key = order_key(0.0);
  for (var j = 0u; j < PER_LANE; j++) {
    let e = lane + j * WG;
    if (e < p.experts && (picked & (1u << (e / group_size))) == 0u) {
      (*keys)[j] = masked_key;
    }
  }
}
#endif

// The choice keys of the row's experts this invocation owns (lane, lane + WG, ...; NO_KEY
// past the last expert), group-limited under SIGMOID with groups > 1: where both variants start.
fn load_choice_keys(row_base: u32, lane: u32, keys: ptr<function, array<u32, PER_LANE>>) {
  for (var j = 0u; j < PER_LANE; j++) {
    let e = lane + j * WG;
    (*keys)[j] = select(NO_KEY, choice_key(row_base, min(e, p.experts - 1u)), e < p.experts);
  }
#if SIGMOID
  if (p.groups > 1u) {
    limit_groups(lane, keys);
  }
#endif
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
  load_choice_keys(row_base, lane, &keys);

#if !SIGMOID
  // softmax denominator over all experts, relative to the max (round 0's pick)
  var lane_max = NO_KEY;
  for (var j = 0u; j < PER_LANE; j++) {
    lane_max = max(lane_max, keys[j]);
  }
  let max_logit = key_value(subgroupMax(lane_max));
  var sum = 0.0;
  for (var j = 0u; j < PER_LANE; j++) {
    if (lane + j * WG < p.experts) {
      sum += exp(key_value(keys[j]) - max_logit);
    }
  }
  let total = subgroupAdd(sum);
#endif

  // top_k rounds of a subgroup argmax over the pairs ranked after the previous pick: the
  // best key, then the lowest expert among the lanes that hold it
  var slot_scores: array<f32, SLOTS>;
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
#if SIGMOID
    let score = sigmoid_score(row_base, prev_expert);
#else
    let score = exp(key_value(prev_key) - max_logit) / total;
#endif
    chosen_sum += score;
    for (var t = 0u; t < SLOTS; t++) {
      if (s == lane + t * WG) {
        slot_scores[t] = score;
        slot_experts[t] = prev_expert;
      }
    }
  }
#if SIGMOID
  chosen_sum += NORM_EPSILON;
#endif
  if (p.normalize == 0u) {
    chosen_sum = 1.0;
  }

  for (var t = 0u; t < SLOTS; t++) {
    let slot = lane + t * WG;
    if (slot < p.top_k) {
      let out = row * p.top_k + slot;
      ids[out] = slot_experts[t];
      weights[out] = slot_scores[t] / chosen_sum * p.scale;
    }
  }
}
#else
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
  load_choice_keys(row_base, lane, &keys);

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

#if SIGMOID
  // invocation s writes slot s (top_k <= MAX_TOP_K <= WG)
  if (lane >= p.top_k) {
    return;
  }
  var chosen_sum = 1.0;
  if (p.normalize != 0u) {
    chosen_sum = 0.0;
    for (var s = 0u; s < p.top_k; s++) {
      chosen_sum += sigmoid_score(row_base, chosen_experts[s]);
    }
    chosen_sum += NORM_EPSILON;
  }
  let score = sigmoid_score(row_base, chosen_experts[lane]);
#else
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
  let score = exp(key_value(chosen_keys[lane]) - max_logit) / total;
#endif
  let out = row * p.top_k + lane;
  ids[out] = chosen_experts[lane];
  weights[out] = score / chosen_sum * p.scale;
}
#endif
