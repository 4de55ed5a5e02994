import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';
import { assertFloat, assertSameDType } from './checks.js';

/** out = a + b, elementwise over `n` elements (all three of one float dtype). */
export function add(rt: KernelRuntime, rec: Recorder, a: GpuTensor, b: GpuTensor, out: GpuTensor, n = out.length): void {
  assertFloat('add', a);
  assertSameDType('add', a, b, out);
  const kernel = rt.kernel({
    shader: 'add',
    defines: { T: a.dtype, F16: a.dtype === 'f16' },
    bindings: ['read', 'read', 'write'],
    params: true,
  });
  rec.dispatch(kernel, [a, b, out], params().u32(n), grid1d(n, 256));
}
