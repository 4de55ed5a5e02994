// Shared by the int8 matmul kernels (gemv-i8.wgsl, matmul-i8.wgsl; #include after
// matmul-args): the weight binding of an int8 part and where things are in it (see
// prepareMatmulWeight): ceil(K / 4) rows of k quads, one vec4<u32> per vec4 column (word j
// is k step j, byte e column e of the four), then ceil(K / GS) rows of f32 scales, one
// vec4 per vec4 column, both in the blocked column layout of every matmul weight.
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;

// k steps per scale
const GS: u32 = {{GS}}u;

// Where vec4 column `col` starts (row 0) in a blocked array of `rows` rows and `ldw` vec4
// columns (blocks of WB), and its step per row: wColumn of matmul-args with `rows` for K.
fn blockColumn(col: u32, ldw: u32, rows: u32) -> vec2<u32> {
  let blk = col / WB;
  let bw = min(WB, ldw - blk * WB);
  return vec2<u32>(blk * WB * rows + (col - blk * WB), bw);
}

// Rows of k quads (K rounded up to a multiple of 4, the padding zero weights) and of scales.
fn kQuads() -> u32 {
  return (p.K + 3u) / 4u;
}

fn groups() -> u32 {
  return (p.K + GS - 1u) / GS;
}

// One word's four int8 (one k step of four columns) as f32, not yet scaled.
fn i8x4(q: u32) -> vec4<f32> {
  return vec4<f32>(unpack4xI8(q));
}

// The scales of a vec4 column at vec4 index i (past the k quads).
fn scaleAt(i: u32) -> vec4<f32> {
  return bitcast<vec4<f32>>(w[i]);
}
