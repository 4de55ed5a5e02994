// Shared (with #include) by rope.wgsl and rope-kv-write.wgsl.
// 2 pi as three f32 parts (Cody-Waite): the first two have 8 significant bits, so k * part
// is exact for k < 2^16, i.e. angles below about 411774 rad; beyond that the reduction is
// as coarse as the f32 angle itself already is.
const TWO_PI_1: f32 = 6.28125;
const TWO_PI_2: f32 = 0.0019378662109375;
const TWO_PI_3: f32 = -2.559031372584286e-6;
const INV_TWO_PI: f32 = 0.15915493667125702;

// Reduces an angle to about [-pi, pi]: sin and cos are only specified to be accurate
// there, and positions of long contexts give angles of 10^5 rad.
fn reduce_angle(a: f32) -> f32 {
  let k = round(a * INV_TWO_PI);
  return ((a - k * TWO_PI_1) - k * TWO_PI_2) - k * TWO_PI_3;
}
