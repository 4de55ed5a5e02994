// Token sampling, one workgroup per row of logits: penalties -> greedy argmax, or
// temperature -> top-k -> top-p -> min-p -> one draw by inverse CDF in token-id order.
//
// Nothing is sorted. Thresholds are found by radix select over an order-preserving u32
// key of each value: 4 passes of a 256-bin histogram (8 bits of the key per pass), each
// bin holding a count and a 64-bit fixed-point probability mass. Masses are integers
// (units of 2^-40 of the largest token's probability), so every sum is exact and the same
// whatever the thread interleaving: the drawn token is a pure function of (logits,
// parameters, seed, position), never of the batch it sits in.
//
// A descent's first level reads the whole vocabulary; the tokens it leaves in play (its
// chosen top-byte bin and above) are then gathered into a workgroup list when at most CAP,
// and the later levels, a top-p over top-k survivors, the draw and the top-N gather read
// that list: on a CPU adapter each full pass costs about as much as a greedy row.
//
// The row values are recomputed in each pass (penalties read from the counts buffer)
// rather than written to a scratch buffer: [256 rows x 152k vocab] of f32 would exceed a
// 128 MiB storage binding.
//
// Output (one u32 array, floats bitcast): token id at [row], its logprob at
// [outRows + row], top-N ids at [2*outRows + row*20 + j], their logprobs at
// [22*outRows + row*20 + j]; unused top slots get id 0xffffffff and logprob -inf; a forced
// row's rank (1 + the tokens with a larger value) at [42*outRows + row].

struct Params {
  vocab: u32,
  rows: u32,
  outRows: u32,
  slots: u32,
}

// 16 words per row, written by src/kernels/sampling.ts (ROW_WORDS).
struct Row {
  temperature: f32,
  topK: u32,
  topP: f32,
  minP: f32,
  repetitionPenalty: f32,
  frequencyPenalty: f32,
  presencePenalty: f32,
  seedLo: u32,
  seedHi: u32,
  position: u32,
  countsSlot: i32,
  topN: u32,
  flags: u32,
  // with FLAG_FORCED: the row's token is this one, not a draw (prompt scoring)
  forcedToken: u32,
  // tokens generated before this row that the counts do not hold yet (a speculative draft
  // row's earlier drafts): pendingCount words of `pending` from pendingAt, each counted once more
  pendingAt: u32,
  pendingCount: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> rowsIn: array<Row>;
@group(0) @binding(2) var<storage, read> counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
// the rows' parameter buffer again, as words: where pendingAt points
@group(0) @binding(4) var<storage, read> pending: array<u32>;
@group(1) @binding(0) var<uniform> p: Params;

const WG: u32 = 256u;
const MAX_TOP: u32 = 20u;
// Stand-in for -inf / +inf: WGSL may assume no infinities at run time, so values are
// clamped to +-BIG and a token at -BIG counts as masked (probability 0).
const BIG: f32 = 3.0e38;
const FLAG_PROCESSED_LOGPROBS: u32 = 1u;
const FLAG_FORCED: u32 = 2u;
const DOMAIN_RAW: u32 = 0u;
const DOMAIN_PROCESSED: u32 = 1u;

// per-row state, identical in every invocation of the workgroup
var<private> rowBase: u32;
var<private> countsBase: u32;
var<private> pendingBase: u32;
var<private> pendingN: u32;
var<private> usePenalties: bool;
var<private> repetition: f32;
var<private> frequency: f32;
var<private> presence: f32;
var<private> invTemperature: f32;
var<private> maxProcessed: f32;

var<workgroup> hCount: array<atomic<u32>, 256>;
var<workgroup> hMassHi: array<atomic<u32>, 256>;
var<workgroup> hMassLo: array<atomic<u32>, 256>;
var<workgroup> sCount: array<u32, 256>;
var<workgroup> sMass: array<vec2<u32>, 256>;
var<workgroup> rA: array<f32, 256>;
var<workgroup> rB: array<f32, 256>;
var<workgroup> rC: array<f32, 256>;
var<workgroup> rD: array<f32, 256>;
var<workgroup> rI: array<u32, 256>;
// results of a radix descent
var<workgroup> dPrefix: u32;
var<workgroup> dNeed: vec2<u32>;
var<workgroup> dAboveCount: u32;
var<workgroup> dAboveMass: vec2<u32>;
var<workgroup> dBinCount: u32;
var<workgroup> dBinMass: vec2<u32>;
var<workgroup> dDone: u32;
// broadcasts
var<workgroup> bU32: u32;
var<workgroup> bU64: vec2<u32>;
var<workgroup> topList: array<u32, 20>;
var<workgroup> topCount: atomic<u32>;
// Candidate list: after a descent's first level, the ids of every token whose key's top
// byte is at or above the chosen bin's (all that the descent's later levels, a top-p over
// top-k survivors, the draw and the top-N gather can select), when at most CAP of them. The
// passes after it read those few ids instead of the whole vocabulary: each full pass costs
// about as much as the whole greedy kernel. Sums stay exact integers, so the list's order
// (atomic appends) changes no result.
const CAP: u32 = 1024u;
var<workgroup> cand: array<u32, 1024>;
var<workgroup> candAppend: atomic<u32>;
// entries in cand; 0xffffffff: no valid list
var<workgroup> candN: u32;
// the list's domain and the lowest key top byte it holds
var<workgroup> candDomain: u32;
var<workgroup> candTop: u32;

// ---- counter-based RNG: must match uniformFor() in src/kernels/rng.ts bit for bit ----

fn lowbias32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

fn uniformFor(seedLo: u32, seedHi: u32, position: u32) -> f32 {
  var h = lowbias32(seedLo ^ 0x9e3779b9u);
  h = lowbias32(h ^ seedHi);
  h = lowbias32(h ^ position);
  h = lowbias32(h + 0x632be5abu);
  return f32(h >> 8u) * (1.0 / 16777216.0);
}

// ---- 64-bit unsigned helpers on vec2<u32>(hi, lo) ----

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  let lo = a.y + b.y;
  return vec2<u32>(a.x + b.x + select(0u, 1u, lo < a.y), lo);
}

fn sub64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  return vec2<u32>(a.x - b.x - select(0u, 1u, a.y < b.y), a.y - b.y);
}

fn lt64(a: vec2<u32>, b: vec2<u32>) -> bool {
  return a.x < b.x || (a.x == b.x && a.y < b.y);
}

fn toF32(a: vec2<u32>) -> f32 {
  return f32(a.x) * 4294967296.0 + f32(a.y);
}

fn fromF32(v: f32) -> vec2<u32> {
  let x = max(v, 0.0);
  let hi = floor(x / 4294967296.0);
  return vec2<u32>(u32(hi), u32(max(x - hi * 4294967296.0, 0.0)));
}

// Probability relative to the row's largest, in units of 2^-40 (the largest is 2^40).
fn fixedMass(rel: f32) -> vec2<u32> {
  let s = clamp(rel, 0.0, 1.0) * 256.0;
  let hi = floor(s);
  return vec2<u32>(u32(hi), u32((s - hi) * 4294967296.0));
}

// ---- row values ----

// NaN -> -BIG, +-inf -> +-BIG, checked on the bits (WGSL may fold float NaN tests away).
fn finite(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7f800000u) == 0x7f800000u) {
    if ((b & 0x007fffffu) != 0u || (b & 0x80000000u) != 0u) {
      return -BIG;
    }
    return BIG;
  }
  return clamp(x, -BIG, BIG);
}

// Penalties (repetition over prompt and generated tokens, HF style; frequency and
// presence over generated tokens, OpenAI style), then temperature.
fn processed(x: f32, i: u32) -> f32 {
  var l = finite(x);
  if (l <= -BIG) {
    return -BIG;
  }
  if (usePenalties) {
    var c = counts[countsBase + i];
    for (var k = 0u; k < pendingN; k++) {
      c += select(0u, 1u, pending[pendingBase + k] == i);
    }
    if (c != 0u) {
      let generated = c & 0x7fffffffu;
      l = select(l * repetition, l / repetition, l > 0.0);
      l = l - frequency * f32(generated) - select(0.0, presence, generated > 0u);
    }
  }
  return finite(l * invTemperature);
}

fn valueAt(domain: u32, i: u32) -> f32 {
  let x = logits[rowBase + i];
  if (domain == DOMAIN_RAW) {
    return finite(x);
  }
  return processed(x, i);
}

// Whether a processed value survives the filters: not masked, at or above the top-k / top-p
// threshold key, and at least min-p of the largest probability.
fn kept(v: f32, threshold: u32, minRel: f32) -> bool {
  return v > -BIG && keyOf(v) >= threshold && exp(v - maxProcessed) >= minRel;
}

// Larger value -> larger key; -0 and +0 share a key.
fn keyOf(v: f32) -> u32 {
  var b = bitcast<u32>(v);
  if ((b & 0x7fffffffu) == 0u) {
    b = 0u;
  }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn massOf(v: f32) -> vec2<u32> {
  if (v <= -BIG) {
    return vec2<u32>(0u, 0u);
  }
  return fixedMass(exp(v - maxProcessed));
}

// ---- workgroup scans ----

// In-place inclusive suffix sums of sCount and sMass (bin t holds sum over bins >= t).
fn suffixScan(t: u32) {
  for (var off = 1u; off < WG; off <<= 1u) {
    var c = sCount[t];
    var m = sMass[t];
    if (t + off < WG) {
      c += sCount[t + off];
      m = add64(m, sMass[t + off]);
    }
    workgroupBarrier();
    sCount[t] = c;
    sMass[t] = m;
    workgroupBarrier();
  }
}

// In-place inclusive prefix sums of sMass.
fn prefixScanMass(t: u32) {
  for (var off = 1u; off < WG; off <<= 1u) {
    var m = sMass[t];
    if (t >= off) {
      m = add64(m, sMass[t - off]);
    }
    workgroupBarrier();
    sMass[t] = m;
    workgroupBarrier();
  }
}

// ---- radix descent ----
// Finds the largest key K such that the weight of elements with key >= K reaches `need`
// (or, after an early stop, a K with zero low bits selecting the same upper set)
// (weight = 1 per element when byMass is false, else its fixed-point mass). Leaves K in
// dPrefix, the count and mass of elements with key > K in dAbove*, and of key == K in dBin*.
// With fraction >= 0 (byMass only), need is fraction x `need`, or fraction x the total
// mass when `need` is 0 (the total is known only after the first histogram).
// Masses are summed only with `withMass` (byMass needs them; a count descent needs them only
// when its caller reads dAboveMass / dBinMass): each costs an exp and two or three atomics per
// token at the top level.
fn addToHistogram(i: u32, domain: u32, level: u32, shift: u32, prefix: u32, withMass: bool) {
  let v = valueAt(domain, i);
  let k = keyOf(v);
  if (level > 0u && (k >> (shift + 8u)) != (prefix >> (shift + 8u))) {
    return;
  }
  let bin = (k >> shift) & 255u;
  atomicAdd(&hCount[bin], 1u);
  if (withMass && domain == DOMAIN_PROCESSED) {
    addMass(bin, massOf(v));
  }
}

// Adds a 64-bit fixed-point mass to bin `bin` of hMassHi / hMassLo (carry included).
fn addMass(bin: u32, m: vec2<u32>) {
  if (m.y != 0u) {
    let old = atomicAdd(&hMassLo[bin], m.y);
    if (old + m.y < old) {
      atomicAdd(&hMassHi[bin], 1u);
    }
  }
  if (m.x != 0u) {
    atomicAdd(&hMassHi[bin], m.x);
  }
}

// Whether the candidate list holds every token of `domain` whose key's top byte is at least
// `top`'s (the same value on every invocation).
fn listCovers(domain: u32, top: u32) -> bool {
  let n = workgroupUniformLoad(&candN);
  let d = workgroupUniformLoad(&candDomain);
  let lowest = workgroupUniformLoad(&candTop);
  return n != 0xffffffffu && d == domain && (top >> 24u) >= lowest;
}

// Gathers into cand the tokens whose key's top byte is at least `top`'s, given their count
// (`count`, uniform); leaves no list when they do not fit.
fn gather(t: u32, domain: u32, top: u32, count: u32) {
  if (count > CAP) {
    if (t == 0u) {
      candN = 0xffffffffu;
    }
    workgroupBarrier();
    return;
  }
  if (t == 0u) {
    atomicStore(&candAppend, 0u);
  }
  workgroupBarrier();
  let topByte = top >> 24u;
  for (var i = t; i < p.vocab; i += WG) {
    if ((keyOf(valueAt(domain, i)) >> 24u) >= topByte) {
      cand[min(atomicAdd(&candAppend, 1u), CAP - 1u)] = i;
    }
  }
  workgroupBarrier();
  if (t == 0u) {
    candN = min(atomicLoad(&candAppend), CAP);
    candDomain = domain;
    candTop = topByte;
  }
  workgroupBarrier();
}

// ---- radix descent ----
// Finds the largest key K such that the weight of elements with key >= K reaches `need`
// (or, after an early stop, a K with zero low bits selecting the same upper set)
// (weight = 1 per element when byMass is false, else its fixed-point mass). Leaves K in
// dPrefix, the count and mass of elements with key > K in dAbove*, and of key == K in dBin*.
// With fraction >= 0 (byMass only), need is fraction x `need`, or fraction x the total
// mass when `need` is 0 (the total is known only after the first histogram).
// Masses are summed only with `withMass` (byMass needs them; a count descent needs them only
// when its caller reads dAboveMass / dBinMass): each costs an exp and two or three atomics per
// token at the top level.
// fromList: read the candidate list from the start (the caller knows it holds every token
// that can reach the answer: a top-p over top-k survivors); else the first level reads the
// vocabulary and gathers the list for the levels after it.
fn descend(t: u32, domain: u32, byMass: bool, need: vec2<u32>, fraction: f32, withMass: bool, fromList: bool) {
  if (t == 0u) {
    dPrefix = 0u;
    dNeed = need;
    dAboveCount = 0u;
    dAboveMass = vec2<u32>(0u, 0u);
    dBinCount = 0u;
    dBinMass = vec2<u32>(0u, 0u);
    dDone = 0u;
  }
  var listed = fromList;
  for (var level = 0u; level < 4u; level++) {
    let shift = 24u - 8u * level;
    atomicStore(&hCount[t], 0u);
    atomicStore(&hMassHi[t], 0u);
    atomicStore(&hMassLo[t], 0u);
    let prefix = workgroupUniformLoad(&dPrefix);
    if (listed) {
      let n = workgroupUniformLoad(&candN);
      for (var j = t; j < n; j += WG) {
        addToHistogram(cand[j], domain, level, shift, prefix, withMass);
      }
    } else {
      for (var i = t; i < p.vocab; i += WG) {
        addToHistogram(i, domain, level, shift, prefix, withMass);
      }
    }
    workgroupBarrier();
    sCount[t] = atomicLoad(&hCount[t]);
    sMass[t] = vec2<u32>(atomicLoad(&hMassHi[t]), atomicLoad(&hMassLo[t]));
    workgroupBarrier();
    suffixScan(t);
    if (level == 0u && fraction >= 0.0 && t == 0u) {
      var base = need;
      if (base.x == 0u && base.y == 0u) {
        base = sMass[0];
      }
      // at least one unit (the largest token always has 2^40), at most the base itself
      var n = fromF32(fraction * toF32(base));
      if (lt64(base, n)) {
        n = base;
      }
      if (n.x == 0u && n.y == 0u) {
        n = vec2<u32>(0u, 1u);
      }
      dNeed = n;
    }
    workgroupBarrier();
    let needNow = workgroupUniformLoad(&dNeed);
    var cIncl = sCount[t];
    var mIncl = sMass[t];
    var cExcl = 0u;
    var mExcl = vec2<u32>(0u, 0u);
    if (t + 1u < WG) {
      cExcl = sCount[t + 1u];
      mExcl = sMass[t + 1u];
    }
    var wIncl = vec2<u32>(0u, cIncl);
    var wExcl = vec2<u32>(0u, cExcl);
    if (byMass) {
      wIncl = mIncl;
      wExcl = mExcl;
    }
    // exactly one bin satisfies excl < need <= incl, given 1 <= need <= total
    if (lt64(wExcl, needNow) && !lt64(wIncl, needNow)) {
      dPrefix = prefix | (t << shift);
      dNeed = sub64(needNow, wExcl);
      dAboveCount += cExcl;
      dAboveMass = add64(dAboveMass, mExcl);
      dBinCount = cIncl - cExcl;
      dBinMass = sub64(mIncl, mExcl);
      // Stop early when the whole bin is taken (counting) or holds one element (mass):
      // then "key >= prefix with the lower bits zero" selects exactly the same tokens.
      let rest = sub64(needNow, wExcl);
      if ((!byMass && dBinCount == rest.y) || dBinCount == 1u) {
        dDone = 1u;
      }
    }
    let done = workgroupUniformLoad(&dDone) != 0u;
    if (level == 0u && !listed) {
      gather(t, domain, workgroupUniformLoad(&dPrefix), workgroupUniformLoad(&dAboveCount) + workgroupUniformLoad(&dBinCount));
      listed = workgroupUniformLoad(&candN) != 0xffffffffu;
    }
    if (done) {
      break;
    }
  }
}

// ---- reductions ----

fn lseMerge(m1: f32, s1: f32, m2: f32, s2: f32) -> vec2<f32> {
  let m = max(m1, m2);
  if (m <= -BIG) {
    return vec2<f32>(m, 0.0);
  }
  return vec2<f32>(m, s1 * exp(m1 - m) + s2 * exp(m2 - m));
}

fn logSumExp(m: f32, s: f32) -> f32 {
  if (m <= -BIG || s <= 0.0) {
    return -BIG;
  }
  return m + log(s);
}

fn chunkRange(t: u32) -> vec2<u32> {
  let chunk = (p.vocab + WG - 1u) / WG;
  return vec2<u32>(min(t * chunk, p.vocab), min((t + 1u) * chunk, p.vocab));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = wid.x;
  if (row >= p.rows) {
    return;
  }
  let r = rowsIn[row];
  let V = p.vocab;
  // no candidate list yet (workgroup memory starts at zero, which would read as an empty one);
  // pass 1's barriers publish this before any use
  if (t == 0u) {
    candN = 0xffffffffu;
  }
  rowBase = row * V;
  usePenalties = r.countsSlot >= 0 && u32(r.countsSlot) < p.slots;
  countsBase = select(0u, u32(r.countsSlot) * V, usePenalties);
  pendingBase = r.pendingAt;
  pendingN = select(0u, r.pendingCount, usePenalties);
  repetition = r.repetitionPenalty;
  frequency = r.frequencyPenalty;
  presence = r.presencePenalty;
  let greedy = r.temperature <= 0.0;
  invTemperature = select(1.0 / r.temperature, 1.0, greedy);
  // a forced row reports the logprobs (and rank) of a given token, the next prompt token,
  // and skips the draw; its rank counts the tokens above it in the logprobs' domain
  let forced = (r.flags & FLAG_FORCED) != 0u && r.forcedToken < V;
  let rankProcessed = (r.flags & FLAG_PROCESSED_LOGPROBS) != 0u;
  let forcedAt = select(0u, r.forcedToken, forced);
  let forcedX = logits[rowBase + forcedAt];
  let forcedValue = select(finite(forcedX), processed(forcedX, forcedAt), rankProcessed);
  var above = 0u;

  // Pass 1: log-sum-exp of raw and processed values, and the processed argmax (lowest id on ties).
  var rawM = -BIG;
  var rawS = 0.0;
  var procM = -BIG;
  var procS = 0.0;
  var argV = -BIG;
  var argI = 0xffffffffu;
  for (var i = t; i < V; i += WG) {
    let x = logits[rowBase + i];
    let raw = finite(x);
    if (raw > -BIG) {
      if (raw > rawM) {
        rawS = rawS * exp(rawM - raw) + 1.0;
        rawM = raw;
      } else {
        rawS += exp(raw - rawM);
      }
    }
    let v = processed(x, i);
    if (v > -BIG) {
      if (v > procM) {
        procS = procS * exp(procM - v) + 1.0;
        procM = v;
      } else {
        procS += exp(v - procM);
      }
    }
    if (argI == 0xffffffffu || v > argV) {
      argV = v;
      argI = i;
    }
    if (forced) {
      above += select(0u, 1u, select(raw, v, rankProcessed) > forcedValue);
    }
  }
  rA[t] = rawM;
  rB[t] = rawS;
  rC[t] = procM;
  rD[t] = procS;
  sCount[t] = argI;
  rI[t] = bitcast<u32>(argV);
  workgroupBarrier();
  for (var off = WG / 2u; off > 0u; off >>= 1u) {
    if (t < off) {
      let a = lseMerge(rA[t], rB[t], rA[t + off], rB[t + off]);
      rA[t] = a.x;
      rB[t] = a.y;
      let b = lseMerge(rC[t], rD[t], rC[t + off], rD[t + off]);
      rC[t] = b.x;
      rD[t] = b.y;
      let v1 = bitcast<f32>(rI[t]);
      let v2 = bitcast<f32>(rI[t + off]);
      let i1 = sCount[t];
      let i2 = sCount[t + off];
      if (i2 != 0xffffffffu && (i1 == 0xffffffffu || v2 > v1 || (v2 == v1 && i2 < i1))) {
        rI[t] = rI[t + off];
        sCount[t] = i2;
      }
    }
    workgroupBarrier();
  }
  let rawLse = logSumExp(rA[0], rB[0]);
  let procLse = logSumExp(rC[0], rD[0]);
  // a local copy: reads of module-scope private variables count as non-uniform
  let maxP = workgroupUniformLoad(&rC[0]);
  maxProcessed = maxP;
  let argmax = sCount[0];
  workgroupBarrier();
  if (forced) {
    sCount[t] = above;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
      if (t < off) {
        sCount[t] += sCount[t + off];
      }
      workgroupBarrier();
    }
    if (t == 0u) {
      out[(2u + 2u * MAX_TOP) * p.outRows + row] = sCount[0] + 1u;
    }
    workgroupBarrier();
  }

  var chosen = select(argmax, r.forcedToken, forced);
  if (!forced && !greedy && maxP > -BIG) {
    // top-k: the k-th largest key (ties at it are kept) and the mass at or above it
    var threshold = 0u;
    var keptMass = vec2<u32>(0u, 0u);
    let useTopK = r.topK > 0u && r.topK < V;
    if (useTopK) {
      // its masses feed only a top-p after it
      descend(t, DOMAIN_PROCESSED, false, vec2<u32>(0u, r.topK), -1.0, r.topP < 1.0, false);
      if (t == 0u) {
        bU64 = add64(dAboveMass, dBinMass);
      }
      keptMass = workgroupUniformLoad(&bU64);
      threshold = workgroupUniformLoad(&dPrefix);
    }
    // top-p over the top-k survivors (renormalised, as HF chains its warpers): the largest
    // key whose upper set holds at least p of their mass, i.e. the smallest nucleus
    if (r.topP < 1.0) {
      // after a top-k its list holds every survivor (keys >= its threshold), all a top-p over
      // them can count
      descend(t, DOMAIN_PROCESSED, true, keptMass, r.topP, true, useTopK && listCovers(DOMAIN_PROCESSED, threshold));
      threshold = max(threshold, workgroupUniformLoad(&dPrefix));
    }
    let minRel = r.minP;

    // Draw: each invocation owns a contiguous chunk of ids; exact integer prefix sums of
    // the kept masses give the inverse CDF in token-id order.
    let range = chunkRange(t);
    var chunkMass = vec2<u32>(0u, 0u);
    if ((useTopK || r.topP < 1.0) && listCovers(DOMAIN_PROCESSED, threshold)) {
      // every kept token is on the list: sum each one's mass into its chunk's bin
      atomicStore(&hMassHi[t], 0u);
      atomicStore(&hMassLo[t], 0u);
      workgroupBarrier();
      let chunk = (p.vocab + WG - 1u) / WG;
      let n = workgroupUniformLoad(&candN);
      for (var j = t; j < n; j += WG) {
        let i = cand[j];
        let v = valueAt(DOMAIN_PROCESSED, i);
        if (kept(v, threshold, minRel)) {
          addMass(i / chunk, massOf(v));
        }
      }
      workgroupBarrier();
      chunkMass = vec2<u32>(atomicLoad(&hMassHi[t]), atomicLoad(&hMassLo[t]));
    } else {
      for (var i = range.x; i < range.y; i++) {
        let v = valueAt(DOMAIN_PROCESSED, i);
        if (kept(v, threshold, minRel)) {
          chunkMass = add64(chunkMass, massOf(v));
        }
      }
    }
    sMass[t] = chunkMass;
    workgroupBarrier();
    prefixScanMass(t);
    if (t == 0u) {
      let total = sMass[WG - 1u];
      var goal = fromF32(uniformFor(r.seedLo, r.seedHi, r.position) * toF32(total));
      if (!lt64(goal, total)) {
        goal = sub64(total, vec2<u32>(0u, 1u));
      }
      bU64 = goal;
      bU32 = argmax;
    }
    let goal = workgroupUniformLoad(&bU64);
    let incl = sMass[t];
    let excl = sub64(incl, chunkMass);
    if (!lt64(goal, excl) && lt64(goal, incl)) {
      var cum = excl;
      for (var i = range.x; i < range.y; i++) {
        let v = valueAt(DOMAIN_PROCESSED, i);
        if (kept(v, threshold, minRel)) {
          cum = add64(cum, massOf(v));
          if (lt64(goal, cum)) {
            bU32 = i;
            break;
          }
        }
      }
    }
    chosen = workgroupUniformLoad(&bU32);
  }

  let domain = select(DOMAIN_RAW, DOMAIN_PROCESSED, (r.flags & FLAG_PROCESSED_LOGPROBS) != 0u);
  var lse = rawLse;
  if (domain == DOMAIN_PROCESSED) {
    lse = procLse;
  }
  if (t == 0u) {
    out[row] = chosen;
    out[p.outRows + row] = bitcast<u32>(valueAt(domain, chosen) - lse);
  }

  // Top-N alternatives: the N-th largest key by a count descent, then a gather of the
  // elements above it plus the lowest-id ties at it, sorted by (value desc, id asc).
  let n = min(r.topN, min(V, MAX_TOP));
  if (n > 0u) {
    descend(t, domain, false, vec2<u32>(0u, n), -1.0, false, false);
    if (t == 0u) {
      atomicStore(&topCount, 0u);
    }
    let kN = workgroupUniformLoad(&dPrefix);
    let above = workgroupUniformLoad(&dAboveCount);
    let tiesNeeded = n - above;
    let tiesAll = workgroupUniformLoad(&dBinCount) == tiesNeeded;
    if (listCovers(domain, kN)) {
      let nc = workgroupUniformLoad(&candN);
      for (var j = t; j < nc; j += WG) {
        let i = cand[j];
        let k = keyOf(valueAt(domain, i));
        if (k > kN || (tiesAll && k == kN)) {
          topList[atomicAdd(&topCount, 1u)] = i;
        }
      }
    } else {
      for (var i = t; i < V; i += WG) {
        let k = keyOf(valueAt(domain, i));
        if (k > kN || (tiesAll && k == kN)) {
          topList[atomicAdd(&topCount, 1u)] = i;
        }
      }
    }
    if (!tiesAll) {
      // more ties than places: the lowest ids win, found by a prefix count over chunks
      let range = chunkRange(t);
      var ties = 0u;
      for (var i = range.x; i < range.y; i++) {
        ties += select(0u, 1u, keyOf(valueAt(domain, i)) == kN);
      }
      sMass[t] = vec2<u32>(0u, ties);
      workgroupBarrier();
      prefixScanMass(t);
      var rank = sMass[t].y - ties;
      for (var i = range.x; i < range.y && rank < tiesNeeded; i++) {
        if (keyOf(valueAt(domain, i)) == kN) {
          topList[above + rank] = i;
          rank++;
        }
      }
    }
    workgroupBarrier();
    if (t == 0u) {
      // insertion sort of at most 20 entries
      for (var a = 1u; a < n; a++) {
        let id = topList[a];
        let v = valueAt(domain, id);
        var b = a;
        while (b > 0u) {
          let prev = topList[b - 1u];
          let pv = valueAt(domain, prev);
          if (pv > v || (pv == v && prev < id)) {
            break;
          }
          topList[b] = prev;
          b--;
        }
        topList[b] = id;
      }
    }
    workgroupBarrier();
  }
  if (t < MAX_TOP) {
    let base = 2u * p.outRows + row * MAX_TOP + t;
    if (t < n) {
      let id = topList[t];
      out[base] = id;
      out[base + MAX_TOP * p.outRows] = bitcast<u32>(valueAt(domain, id) - lse);
    } else {
      out[base] = 0xffffffffu;
      out[base + MAX_TOP * p.outRows] = 0xff800000u;
    }
  }
}
