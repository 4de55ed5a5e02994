/**
 * GPU waits: how long a kernel plus readback takes, and how much CPU the waiting main
 * thread burns, with Dawn's own event polling ('spin') and with paced polling ('paced',
 * src/kernels/event-polling.ts). Kernels of several lengths (a dependent FMA chain per
 * invocation), one runtime per mode, modes back to back in one process. A benchmark, not
 * a test. Linux only for the main-thread CPU column (/proc).
 *
 * Run: npx tsc -p . && node dist/bench/gpu-waits.js
 */
import { KernelRuntime } from '../src/kernels/runtime.js';
import { mainThreadCpuMs } from '../src/testing/proc-cpu.js';
import type { EventPollingMode } from '../src/kernels/event-polling.js';
import { formatTable, markdownTable, runStamp, updateResultsSection } from './report.js';

const SIZES = [200_000, 20_000, 200, 1];

async function measure(
  mode: EventPollingMode,
): Promise<{ adapter: string; rows: { iterations: number; msPerRun: number; cpuMsPerRun: number }[] }> {
  const rt = await KernelRuntime.create({ eventPolling: mode });
  const rows = [];
  try {
    const device = rt.device;
    const buffer = device.createBuffer({ size: 4 * 64 * 256, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    for (const iterations of SIZES) {
      const code = `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var a = f32(g.x) * 1e-6;
  for (var i = 0u; i < ${iterations}u; i++) { a = a * 0.999 + 1e-7; }
  out[g.x] = a;
}`;
      const pipeline = device.createComputePipeline({
        layout: 'auto',
        compute: { module: device.createShaderModule({ code }), entryPoint: 'main' },
      });
      const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] });
      const run = async (): Promise<void> => {
        const encoder = device.createCommandEncoder();
        const pass = encoder.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(256);
        pass.end();
        device.queue.submit([encoder.finish()]);
        await rt.readBytes(buffer, 0, 256);
      };
      await run();
      const n = iterations > 10_000 ? 5 : 200;
      const t0 = performance.now();
      const c0 = mainThreadCpuMs();
      for (let i = 0; i < n; i++) await run();
      rows.push({ iterations, msPerRun: (performance.now() - t0) / n, cpuMsPerRun: (mainThreadCpuMs() - c0) / n });
    }
    buffer.destroy();
    return { adapter: rt.adapterName, rows };
  } finally {
    rt.destroy();
  }
}

async function main(): Promise<void> {
  const spin = await measure('spin');
  const paced = await measure('paced');
  const headers = [
    'FMA-chain iterations',
    'spin: ms/run',
    'spin: main-thread CPU ms/run',
    'paced: ms/run',
    'paced: main-thread CPU ms/run',
  ];
  const rows = spin.rows.map((s, i) => {
    const p = paced.rows[i]!;
    return [String(s.iterations), s.msPerRun.toFixed(2), s.cpuMsPerRun.toFixed(2), p.msPerRun.toFixed(2), p.cpuMsPerRun.toFixed(2)];
  });
  console.log(`adapter: ${spin.adapter}\n${formatTable(headers, rows)}`);
  const { commit, date } = runStamp();
  updateResultsSection(
    'gpu-waits',
    '## GPU waits (event polling)\n\n' +
      "dawn.node resolves `mapAsync` / `onSubmittedWorkDone` by calling Dawn's ProcessEvents from a back-to-back `setImmediate` chain while any of them is pending, so the waiting main thread spins at 100% of a core. " +
      'On lavapipe that core is taken from the shader threads. src/kernels/event-polling.ts paces the ticks (1 ms spin, then one poll per ms) on CPU adapters (`AUTOGLM_GPU_EVENT_POLLING=auto|spin|paced`).\n\n' +
      `Adapter: ${spin.adapter}. Date: ${date}, commit ${commit}. Command: \`npx tsc -p . && node dist/bench/gpu-waits.js\` ` +
      '(one kernel of 256 x 64 invocations, then a 256-byte readback through KernelRuntime.readBytes; 5 runs per long kernel, 200 per short one; spin first, then paced, in one process).\n\n' +
      markdownTable(headers, rows),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
