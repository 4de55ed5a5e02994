/**
 * Raw little-endian safetensors bytes -> the two forms the engine uploads: f32 values or
 * f16 bit patterns. bf16 and f16 values are exact in f32; f32 -> f16 rounds to nearest
 * even (values beyond f16's range become +-Infinity, tiny ones become subnormal or zero).
 * F8_E4M3 bytes decode here too, unscaled: their block scales are applied in block-fp8.ts.
 */

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

export const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

/** Every f16 bit pattern's value, built on first use (256 KiB). */
let f16Table: Float32Array | null = null;

function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = sign * mant * 2 ** -24;
    else if (exp === 31) table[h] = mant ? NaN : sign * Infinity;
    else table[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  f16Table = table;
  return table;
}

/** f16 bits -> value. */
export function f16BitsToNumber(bits: number): number {
  return halfTable()[bits & 0xffff]!;
}

/** Value -> f16 bits, round to nearest even. */
export function numberToF16Bits(value: number): number {
  scratchF32[0] = value;
  return f32BitsToF16Bits(scratchU32[0]!);
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN (quiet)
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00; // overflow -> Inf
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal -> 0
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m; // m may carry into the exponent field: that is the right answer
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++; // may carry to Inf: correct
  return sign | h;
}

/**
 * Every e4m3fn byte's value (OCP FP8 E4M3, torch.float8_e4m3fn): 1 sign bit, 4 exponent
 * bits of bias 7, 3 mantissa bits; exponent 0 is subnormal (m * 2^-9); no infinities, and
 * only S.1111.111 (0x7f, 0xff) is NaN, so the largest value is 1.75 * 2^8 = 448.
 */
let e4m3Table: Float32Array | null = null;

export function f8E4m3Table(): Float32Array {
  if (e4m3Table) return e4m3Table;
  const table = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const exp = (b >> 3) & 0xf;
    const mant = b & 0x7;
    if ((b & 0x7f) === 0x7f) table[b] = NaN;
    else if (exp === 0) table[b] = sign * mant * 2 ** -9;
    else table[b] = sign * (1 + mant / 8) * 2 ** (exp - 7);
  }
  e4m3Table = table;
  return table;
}

/** e4m3fn byte -> value. */
export function f8E4m3BitsToNumber(bits: number): number {
  return f8E4m3Table()[bits & 0xff]!;
}

/** How many e4m3fn bytes are NaN (the format's only non-finite patterns). */
export function countNaNF8E4m3(bytes: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bytes.length; i++) if ((bytes[i]! & 0x7f) === 0x7f) n++;
  return n;
}

/** Raw tensor bytes (length a multiple of the dtype size, 4-byte aligned start) -> f32 values. */
export function toFloat32(bytes: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  if (dtype === 'F32') return view32f(bytes, n);
  const src = view16(bytes, n);
  const out = new Float32Array(n);
  if (dtype === 'BF16') {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = src[i]! << 16;
  } else {
    const t = halfTable();
    for (let i = 0; i < n; i++) out[i] = t[src[i]!]!;
  }
  return out;
}

/** Raw tensor bytes -> f16 bit patterns (rounded to nearest even from F32 and BF16). */
export function toFloat16Bits(bytes: Uint8Array, dtype: SafetensorsDtype): Uint16Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  if (dtype === 'F16') return view16(bytes, n);
  const out = new Uint16Array(n);
  if (dtype === 'F32') {
    const src = view32u(bytes, n);
    for (let i = 0; i < n; i++) out[i] = f32BitsToF16Bits(src[i]!);
  } else {
    const src = view16(bytes, n);
    for (let i = 0; i < n; i++) out[i] = f32BitsToF16Bits(src[i]! << 16);
  }
  return out;
}

/**
 * How many f16 bit patterns are Infinity or NaN (exponent all ones). Every weight passes
 * through here at load, so the common all-finite case is one branch-free pass over 32-bit
 * words: adding 1 to a half's 5-bit exponent field (masked) carries into its sign bit only
 * when the field was all ones. Counting element by element happens only when that finds one.
 */
export function countNonFiniteF16(bits: Uint16Array): number {
  // an unaligned view is tested element by element below
  const pairs = bits.byteOffset % 4 === 0 ? bits.length >> 1 : 0;
  const words = pairs > 0 ? new Uint32Array(bits.buffer, bits.byteOffset, pairs) : new Uint32Array(0);
  let any = 0;
  for (let i = 0; i < words.length; i++) any |= ((words[i]! & 0x7c007c00) + 0x04000400) & 0x80008000;
  for (let i = 2 * pairs; i < bits.length; i++) any |= (bits[i]! & 0x7c00) ^ 0x7c00 ? 0 : 1;
  if (any === 0) return 0;
  let n = 0;
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0x7c00) === 0x7c00) n++;
  return n;
}

/** How many values are Infinity or NaN (the same one-pass test on the 8-bit exponent first). */
export function countNonFiniteF32(values: Float32Array): number {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  let any = 0;
  for (let i = 0; i < words.length; i++) any |= ((words[i]! & 0x7f800000) + 0x00800000) & 0x80000000;
  if (any === 0) return 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) n++;
  return n;
}

/** How many of a tensor's raw values (in its own dtype) are Infinity or NaN. */
export function countNonFiniteRaw(bytes: Uint8Array, dtype: SafetensorsDtype): number {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  if (dtype === 'F32') return countNonFiniteF32(view32f(bytes, n));
  const src = view16(bytes, n);
  if (dtype === 'F16') return countNonFiniteF16(src);
  let count = 0;
  for (let i = 0; i < n; i++) if ((src[i]! & 0x7f80) === 0x7f80) count++;
  return count;
}

/** f32 values -> f16 bits. */
export function float32ToF16Bits(values: Float32Array): Uint16Array {
  return toFloat16Bits(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), 'F32');
}

/** f32 values -> bf16 bits, round to nearest even (NaN kept quiet). */
export function float32ToBf16Bits(values: Float32Array): Uint16Array {
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = src[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x40;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

// Typed-array views need an aligned start; copy only when the bytes are not aligned.
function view16(bytes: Uint8Array, n: number): Uint16Array {
  const b = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  return new Uint16Array(b.buffer, b.byteOffset, n);
}

function view32u(bytes: Uint8Array, n: number): Uint32Array {
  const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Uint32Array(b.buffer, b.byteOffset, n);
}

function view32f(bytes: Uint8Array, n: number): Float32Array {
  const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Float32Array(b.buffer, b.byteOffset, n);
}
