import type { Activation } from '../../src/kernels/activation.js';
import { matmul, type MatmulTuning, type MatmulWeight } from '../../src/kernels/matmul.js';
import { ACTIVATIONS_REF, gatedActivationRef } from '../reference/activation.js';
import { matmulRef } from '../reference/matmul.js';
import { relativeError } from './gpu.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import { sliceTensor } from '../../src/kernels/tensor.js';
import { poisoned } from './gpu.js';
import type { Rng } from './random.js';
import { rmsNormRef } from '../reference/norms.js';

export interface MatmulRun {
  M: number;
  /** Elements per row of x: K, or 2K for fused gate/up rows. */
  ldx: number;
  /** Rows of padding before x and out inside their buffers (slices at an unaligned offset); filled from `rng`. */
  pad: number;
  rng: Rng;
  tuning?: Partial<MatmulTuning>;
  gated?: Activation;
  /** An RMSNorm folded into the matmul's input (MatmulArgs.normX), its weight uploaded here. */
  normX?: { weight: Float32Array; eps: number; onePlus: boolean };
  /** MatmulArgs.accumulate: out starts as these M x N values instead of poison. */
  accumulateOnto?: Float32Array;
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
  const outAll = o.accumulateOnto
    ? rt.upload('f32', new Float32Array([...o.rng.floats(pad * N), ...o.accumulateOnto]))
    : poisoned(rt, 'f32', (pad + M) * N);
  const normWeight = o.normX ? rt.upload('f32', o.normX.weight) : undefined;
  try {
    const rec = rt.recorder();
    matmul(rt, rec, {
      x: sliceTensor(xAll, pad * ldx, M * ldx),
      weight,
      out: sliceTensor(outAll, pad * N, M * N),
      M,
      tuning: o.tuning,
      gated: o.gated,
      normX: o.normX && normWeight ? { weight: normWeight, eps: o.normX.eps, onePlus: o.normX.onePlus } : undefined,
      accumulate: o.accumulateOnto !== undefined,
    });
    await rec.submit();
    return await rt.readFloats(outAll, pad * N, M * N);
  } finally {
    rt.destroyBuffer(xAll.buffer);
    rt.destroyBuffer(outAll.buffer);
    if (normWeight) rt.destroyBuffer(normWeight.buffer);
  }
}

/** A matmul test case's folded RMSNorm (MatmulArgs.normX, plain or (1 + w)) and accumulate. */
export interface FoldCase {
  norm?: 'plain' | 'onePlus';
  accumulate?: boolean;
}

/**
 * What a fold case adds around a matmul test: a random norm weight and eps, and random
 * starting values of out (to run with runMatmulAtOffset), the reference input (the RMSNorm of
 * `x` in float64, or `x`) and the reference result (the matmul's plus the starting values).
 */
export function foldInputs(
  rng: Rng,
  x: Float32Array,
  M: number,
  N: number,
  K: number,
  f: FoldCase,
): { input: ArrayLike<number>; run: Pick<MatmulRun, 'normX' | 'accumulateOnto'>; result(matmul: Float64Array): Float64Array } {
  let input: ArrayLike<number> = x;
  let normX: MatmulRun['normX'];
  if (f.norm) {
    const onePlus = f.norm === 'onePlus';
    // Gemma-style offsets from 1 are small; plain weights sit around 1, some near 0
    const weight = rng.floats(K).map((v) => (onePlus ? 0.3 * v : 1 + v));
    normX = { weight, eps: 1e-5, onePlus };
    input = rmsNormRef(x, weight, { rows: M, dim: K, eps: normX.eps, onePlus });
  }
  const start = f.accumulate ? rng.floats(M * N) : undefined;
  return {
    input,
    run: { normX, accumulateOnto: start },
    result: (matmul) => (start ? matmul.map((v, i) => v + start[i]!) : matmul),
  };
}

/** A matmul test case's shape and options, as matmulError runs them. */
export interface MatmulCase extends FoldCase {
  M: number;
  K: number;
  /** Rows of padding before x and out inside their buffers (slices at an unaligned offset). */
  offsetRows?: number;
  tuning?: Partial<MatmulTuning>;
  /** x is [M, 2K] fused gate/up rows; the matmul's input is act(gate) * up. */
  gated?: Activation;
}

/**
 * Runs matmul over `weight` on `x` the way case `c` asks (gated input, folded norm,
 * accumulate, offset rows) and returns its relative error against the float64 reference
 * over `w`, the weights as the kernel should see them ([N, K], rounded or dequantized).
 * Draws the fold's inputs from `rng`, so call it after the case's own draws.
 */
export async function matmulError(
  rt: KernelRuntime,
  weight: MatmulWeight,
  x: Float32Array,
  w: ArrayLike<number>,
  c: MatmulCase,
  rng: Rng,
  bias?: ArrayLike<number>,
): Promise<number> {
  const { M, K } = c;
  const N = weight.N;
  const fold = foldInputs(rng, x, M, N, K, c);
  const input = c.gated ? gatedActivationRef(x, M, K, ACTIVATIONS_REF[c.gated]) : fold.input;
  const ldx = c.gated ? 2 * K : K;
  const got = await runMatmulAtOffset(rt, weight, x, {
    M,
    ldx,
    pad: c.offsetRows ?? 0,
    rng,
    tuning: c.tuning,
    gated: c.gated,
    ...fold.run,
  });
  return relativeError(got, fold.result(matmulRef(input, w, M, N, K, bias)));
}
