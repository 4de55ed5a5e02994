import type { Activation } from '../../src/kernels/activation.js';
import { matmul, type MatmulTuning, type MatmulWeight } from '../../src/kernels/matmul.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import { sliceTensor } from '../../src/kernels/tensor.js';
import { poisoned } from './gpu.js';
import type { Rng } from './random.js';

export interface MatmulRun {
  M: number;
  /** Elements per row of x: K, or 2K for fused gate/up rows. */
  ldx: number;
  /** Rows of padding before x and out inside their buffers (slices at an unaligned offset); filled from `rng`. */
  pad: number;
  rng: Rng;
  tuning?: Partial<MatmulTuning>;
  gated?: Activation;
}

/**
 * Runs matmul on the M rows of `x` placed after `pad` rows of padding in their buffer, into
 * a poisoned output at the same row offset, and reads back the M x N result: the part every
 * matmul test (f32, f16, int8 weights) shares around its own weights and reference.
 */
export async function runMatmulAtOffset(rt: KernelRuntime, weight: MatmulWeight, x: Float32Array, o: MatmulRun): Promise<Float32Array> {
  const { M, ldx, pad } = o;
  const N = weight.N;
  const xAll = rt.upload('f32', new Float32Array([...o.rng.floats(pad * ldx), ...x]));
  const outAll = poisoned(rt, 'f32', (pad + M) * N);
  try {
    const rec = rt.recorder();
    matmul(rt, rec, {
      x: sliceTensor(xAll, pad * ldx, M * ldx),
      weight,
      out: sliceTensor(outAll, pad * N, M * N),
      M,
      tuning: o.tuning,
      gated: o.gated,
    });
    await rec.submit();
    return await rt.readFloats(outAll, pad * N, M * N);
  } finally {
    rt.destroyBuffer(xAll.buffer);
    rt.destroyBuffer(outAll.buffer);
  }
}
