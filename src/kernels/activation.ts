/**
 * Activations over f32 activations: the fused gated forms (SwiGLU = silu(gate) * up,
 * GeGLU-tanh = gelu_tanh(gate) * up) on a fused gate_up projection's output, and plain
 * elementwise SiLU / GELU (tanh approximation).
 */
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { assertF32, assertNoOverlap, assertPositiveInt } from './arg-checks.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

export type Activation = 'silu' | 'gelu_tanh';

export interface GatedActivationOptions {
  /** f32 [rows, 2 * inner]: each row is [gate (inner) | up (inner)]. */
  x: GpuTensor;
  /** f32 [rows, inner]. */
  out: GpuTensor;
  rows: number;
  /** The intermediate size: width of the gate half, and of the output. */
  inner: number;
  activation: Activation;
}

/** out[r, c] = act(x[r, c]) * x[r, inner + c]. */
export function gatedActivation(rt: KernelRuntime, rec: Recorder, o: GatedActivationOptions): void {
  const op = 'gatedActivation';
  assertPositiveInt(op, { rows: o.rows, inner: o.inner });
  assertF32(op, o.x, o.out);
  assertLength(op, 'x', o.x, o.rows * 2 * o.inner);
  assertLength(op, 'out', o.out, o.rows * o.inner);
  assertNoOverlap(op, ['x', 'out'], o.x, o.out);
  const n = o.rows * o.inner;
  const kernel = rt.kernel({
    shader: 'activation',
    defines: { ACT: o.activation, GATED: true },
    bindings: ['read', 'write'],
    params: true,
  });
  rec.dispatch(kernel, [o.x, o.out], params().u32(n).u32(o.inner), grid1d(n, 256));
}

/** SwiGLU: out = silu(gate) * up on a fused [gate | up] row. */
export function siluAndMul(rt: KernelRuntime, rec: Recorder, o: Omit<GatedActivationOptions, 'activation'>): void {
  gatedActivation(rt, rec, { ...o, activation: 'silu' });
}

/** GeGLU with the tanh GELU: out = gelu_tanh(gate) * up on a fused [gate | up] row. */
export function geluTanhAndMul(rt: KernelRuntime, rec: Recorder, o: Omit<GatedActivationOptions, 'activation'>): void {
  gatedActivation(rt, rec, { ...o, activation: 'gelu_tanh' });
}

export interface ActivationOptions {
  /** f32 [n]. */
  x: GpuTensor;
  /** f32 [n], not overlapping x (a writable binding may not alias a read one). */
  out: GpuTensor;
  n: number;
  activation: Activation;
}

/** out[i] = act(x[i]). */
export function activation(rt: KernelRuntime, rec: Recorder, o: ActivationOptions): void {
  const op = 'activation';
  assertPositiveInt(op, { n: o.n });
  assertF32(op, o.x, o.out);
  assertLength(op, 'x', o.x, o.n);
  assertLength(op, 'out', o.out, o.n);
  assertNoOverlap(op, ['x', 'out'], o.x, o.out);
  const kernel = rt.kernel({
    shader: 'activation',
    defines: { ACT: o.activation, GATED: false },
    bindings: ['read', 'write'],
    params: true,
  });
  rec.dispatch(kernel, [o.x, o.out], params().u32(o.n).u32(0), grid1d(o.n, 256));
}
