/**
 * One real GPU runtime per test file, destroyed after the file (Dawn must not outlive
 * the process's teardown). Tests run on whatever adapter Dawn finds: lavapipe here.
 */
import { afterAll, beforeAll } from 'vitest';
import { KernelRuntime, type RuntimeOptions } from '../../src/kernels/runtime.js';
import type { GpuTensor, DType } from '../../src/kernels/tensor.js';
import { f32ToF16Bits } from '../../src/kernels/runtime.js';

export function useRuntime(options: Pick<RuntimeOptions, 'forceF32' | 'kernelProfile'> = {}): () => KernelRuntime {
  let rt: KernelRuntime | undefined;
  beforeAll(async () => {
    rt = await KernelRuntime.create(options);
  });
  afterAll(() => {
    rt?.destroy();
    rt = undefined;
  });
  return () => {
    if (!rt) throw new Error('runtime not ready');
    return rt;
  };
}

/** Uploads float values as a tensor of the given float dtype. */
export function uploadFloats(rt: KernelRuntime, dtype: DType, values: Float32Array): GpuTensor {
  return dtype === 'f16' ? rt.upload('f16', f32ToF16Bits(values)) : rt.upload('f32', values);
}

/** A fresh output tensor filled with NaN, so that an element the kernel forgets to write fails the test. */
export function poisoned(rt: KernelRuntime, dtype: DType, length: number): GpuTensor {
  const t = rt.tensor(dtype, length);
  if (dtype === 'f16') rt.write(t, new Uint16Array(length).fill(0x7e00));
  else if (dtype === 'f32') rt.write(t, new Float32Array(length).fill(NaN));
  else rt.write(t, new Uint32Array(length).fill(0xdeadbeef));
  return t;
}

/** Values rounded the way an f16 upload rounds them, so references see the same inputs. */
export function roundTo(dtype: DType, values: Float32Array): Float32Array {
  if (dtype !== 'f16') return values;
  const bits = f32ToF16Bits(values);
  const out = new Float32Array(values.length);
  const dv = new DataView(new ArrayBuffer(2));
  for (let i = 0; i < bits.length; i++) {
    dv.setUint16(0, bits[i]!, true);
    out[i] = halfBitsToNumber(bits[i]!);
  }
  return out;
}

function halfBitsToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Relative L2 error ||out - ref|| / ||ref||; NaN anywhere gives Infinity so it never passes. */
export function relativeError(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`length mismatch ${out.length} vs ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const o = out[i]!;
    if (!Number.isFinite(o)) return Infinity;
    const d = o - ref[i]!;
    num += d * d;
    den += ref[i]! * ref[i]!;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

export const TOLERANCE: Record<'f32' | 'f16', number> = { f32: 1e-4, f16: 1e-2 };
