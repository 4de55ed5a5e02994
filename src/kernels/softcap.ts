/**
 * Final-logit soft-capping (Gemma 2's final_logit_softcapping): x = cap * tanh(x / cap), in
 * place on the first `count` values of an f32 tensor (the lm head's logits, rows x vocab).
 * Record it right after the lm head, before anything that edits logits for sampling
 * (logit_bias, token masks): a ban's huge negative bias would otherwise be capped to -cap.
 */
import { assertF32, assertPositiveInt, isPositiveF32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

const WORKGROUP = 256;

/** x[i] = cap * tanh(x[i] / cap) for i < count, in place. */
export function softcap(rt: KernelRuntime, rec: Recorder, o: { x: GpuTensor; count: number; cap: number }): void {
  const op = 'softcap';
  assertPositiveInt(op, { count: o.count });
  if (!isPositiveF32(o.cap)) throw new RangeError(`${op}: cap must be a positive finite f32, got ${o.cap}`);
  assertF32(op, o.x);
  assertLength(op, 'x', o.x, o.count);
  const kernel = rt.kernel({ shader: 'softcap', bindings: ['write'], params: true });
  rec.dispatch(kernel, [o.x], params().u32(o.count).f32(o.cap), grid1d(o.count, WORKGROUP, rt.ctx.limits.maxComputeWorkgroupsPerDimension));
}
