/**
 * The dispatch profiler on the real adapter: while attached it times each dispatch in a
 * pass of its own and sums by kernel, without changing any result; detached, recording is
 * as before; past its query set's room dispatches still run, counted as untimed.
 */
import { expect, it } from 'vitest';
import { add } from '../../src/kernels/add.js';
import { DispatchProfiler } from '../../src/kernels/dispatch-profiler.js';
import { matmul, prepareMatmulWeight } from '../../src/kernels/matmul.js';
import { Rng } from '../helpers/random.js';
import { poisoned, relativeError, uploadFloats, useRuntime } from '../helpers/gpu.js';
import { addRef } from '../reference/elementwise.js';

const runtime = useRuntime();

it('times each dispatch by kernel, across recorders, and leaves the results unchanged', async ({ skip }) => {
  const rt = runtime();
  if (!rt.ctx.features.timestampQuery) return skip('the adapter has no timestamp-query');
  const rng = new Rng(5);
  const n = 4097;
  const a = rng.floats(n);
  const b = rng.floats(n);
  const out = poisoned(rt, 'f32', n);
  const [K, N] = [64, 48];
  const weight = prepareMatmulWeight(rt, { data: Float32Array.from(rng.floats(N * K)), N, K, dtype: 'f32' });
  const x = uploadFloats(rt, 'f32', rng.floats(K));
  const y = poisoned(rt, 'f32', N);
  const profiler = new DispatchProfiler(rt);
  rt.profiler = profiler;
  try {
    const first = rt.recorder();
    for (let i = 0; i < 3; i++) add(rt, first, uploadFloats(rt, 'f32', a), uploadFloats(rt, 'f32', b), out);
    await first.submit();
    const second = rt.recorder();
    matmul(rt, second, { x, weight, out: y, M: 1 });
    add(rt, second, uploadFloats(rt, 'f32', a), uploadFloats(rt, 'f32', b), out);
    await second.submit();
  } finally {
    rt.profiler = null;
  }
  expect(relativeError(await rt.readFloats(out), addRef(a, b))).toBeLessThanOrEqual(1e-6);
  expect((await rt.readFloats(y)).every(Number.isFinite)).toBe(true);
  const times = await profiler.read();
  const byKernel = new Map(times.map((t) => [t.kernel, t]));
  expect(byKernel.get('add')?.dispatches).toBe(4);
  expect([...byKernel.keys()].some((k) => k.startsWith('gemv'))).toBe(true);
  for (const t of times) expect(t.ms).toBeGreaterThan(0);
  expect(profiler.dispatches).toBe(5);

  // detached: nothing more is counted, but a recording timed while attached is resolved at its submit
  const late = rt.recorder();
  rt.profiler = profiler;
  add(rt, late, uploadFloats(rt, 'f32', a), uploadFloats(rt, 'f32', b), out);
  rt.profiler = null;
  await late.submit();
  expect((await profiler.read()).find((t) => t.kernel === 'add')).toMatchObject({ dispatches: 5 });
  const rec = rt.recorder();
  add(rt, rec, uploadFloats(rt, 'f32', a), uploadFloats(rt, 'f32', b), out);
  await rec.submit();
  expect(profiler.dispatches).toBe(6);
  profiler.destroy();
  weight.destroy();
});

it('runs dispatches past the query set untimed', async ({ skip }) => {
  const rt = runtime();
  if (!rt.ctx.features.timestampQuery) return skip('the adapter has no timestamp-query');
  const ones = new Float32Array(4).fill(1);
  const a = uploadFloats(rt, 'f32', ones);
  const out = poisoned(rt, 'f32', 4);
  const profiler = new DispatchProfiler(rt);
  rt.profiler = profiler;
  try {
    const rec = rt.recorder();
    for (let i = 0; i < 2050; i++) add(rt, rec, a, a, out);
    await rec.submit();
  } finally {
    rt.profiler = null;
  }
  expect(profiler.dispatches).toBe(2048);
  expect(profiler.untimed).toBe(2);
  expect(Array.from(await rt.readFloats(out))).toEqual([2, 2, 2, 2]);
  const [only] = await profiler.read();
  expect(only).toMatchObject({ kernel: 'add', dispatches: 2048 });
  profiler.destroy();
});
