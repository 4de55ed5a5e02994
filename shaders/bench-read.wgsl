// Bandwidth ceiling: every invocation streams vec4s of `src` and writes one sum (so the
// loads cannot be removed). Two access orders, each the fastest for its kind of adapter:
// - GPUs (grid-stride): at each step consecutive lanes of the whole dispatch read
//   consecutive vec4s, the coalesced pattern memory controllers want.
// - CPU adapters (BLOCKED): each workgroup runs on one core, so each workgroup streams
//   its own contiguous range (lanes interleaved inside it), which the core's hardware
//   prefetchers follow. The grid-stride order reads only 1 KiB per workgroup between
//   jumps on a CPU and measured about half the bandwidth on lavapipe (9 vs 18 GB/s).
struct Params {
  n4: u32,
  // grid-stride: invocations in the whole dispatch; BLOCKED: vec4s per workgroup
  span: u32,
}

const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
#if BLOCKED
  let start = wid.x * p.span;
  let end = min(start + p.span, p.n4);
  var i = start + lid.x;
  let s = WG;
#else
  let end = p.n4;
  var i = wid.x * WG + lid.x;
  let s = p.span;
#endif
  for (; i + 3u * s < end; i += 4u * s) {
    a0 += src[i];
    a1 += src[i + s];
    a2 += src[i + 2u * s];
    a3 += src[i + 3u * s];
  }
  for (; i < end; i += s) {
    a0 += src[i];
  }
  let v = a0 + a1 + a2 + a3;
  sink[wid.x * WG + lid.x] = v.x + v.y + v.z + v.w;
}
