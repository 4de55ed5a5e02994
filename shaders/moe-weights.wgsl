// The expert weights of one part (binding 1 of moe-matmul.wgsl and moe-matmul-grouped.wgsl;
// pulled in with #include), [N][K] row-major per expert, read a vec4 along K at a time:
// WF32 as vec4s; WF16 as IEEE halves packed two per u32 (f16 is storage only, the
// arithmetic f32, no shader-f16 needed); INT8 as four int8 per u32 word, with the scales
// (one per row and group of GS) after the values in the same buffer, applied by the caller.
#if WF32
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
#endif
#if WF16
@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>;
#endif
#if INT8
@group(0) @binding(1) var<storage, read> w: array<u32>;
// k per scale, and vec4s (words) of W per scale
const GS: u32 = {{GS}}u;
const GS4: u32 = GS / 4u;
#endif

fn wAt(i: u32) -> vec4<f32> {
#if WF32
  return w[i];
#endif
#if WF16
  let h = w[i];
  return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
#endif
#if INT8
  // not yet scaled
  return vec4<f32>(unpack4xI8(w[i]));
#endif
}
