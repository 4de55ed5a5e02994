// process CPU time per (rmsnorm + matmul) against one matmul with the norm folded, alternating
import { KernelRuntime, f32ToF16Bits } from '../../dist/src/kernels/runtime.js';
import { matmul, prepareMatmulWeight } from '../../dist/src/kernels/matmul.js';
import { rmsNorm } from '../../dist/src/kernels/rmsnorm.js';
const rt = await KernelRuntime.create();
const rnd = (n) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
const shapes = process.argv.slice(2).map((s) => s.split('x').map(Number)); // MxNxK
for (const [M, N, K] of shapes) {
  const weight = prepareMatmulWeight(rt, { data: f32ToF16Bits(rnd(N * K)), N, K, dtype: 'f16' });
  const x = rt.upload('f32', rnd(M * K));
  const normed = rt.upload('f32', rnd(M * K));
  const g = rt.upload('f32', rnd(K).map((v) => 1 + v));
  const out = rt.upload('f32', new Float32Array(M * N));
  const iters = M >= 128 ? 3 : 20;
  const time = async (folded) => {
    const rec = rt.recorder();
    for (let i = 0; i < iters; i++) {
      if (folded) matmul(rt, rec, { x, weight, out, M, normX: { weight: g, eps: 1e-5, onePlus: false } });
      else {
        rmsNorm(rt, rec, { x, weight: g, out: normed, rows: M, dim: K, eps: 1e-5 });
        matmul(rt, rec, { x: normed, weight, out, M });
      }
    }
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await rec.submit();
    await rt.sync();
    const c = process.cpuUsage(c0);
    return { cpu: (c.user + c.system) / 1000 / iters, wall: (performance.now() - t0) / iters };
  };
  await time(true); await time(false);
  const f = [], u = [];
  for (let r = 0; r < 7; r++) { f.push(await time(true)); u.push(await time(false)); }
  const med = (v, k) => v.map((x) => x[k]).sort((a, b) => a - b)[3];
  console.log(`${M}x${N}x${K}: folded cpu ${med(f, 'cpu').toFixed(2)} wall ${med(f, 'wall').toFixed(2)} ms; separate cpu ${med(u, 'cpu').toFixed(2)} wall ${med(u, 'wall').toFixed(2)} ms; cpu ratio ${(med(f, 'cpu') / med(u, 'cpu')).toFixed(3)}`);
  weight.destroy();
}
rt.destroy();
