import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isEventPollingPaced, looksLikeDawnTick, paceDawnEventPolling, resolveEventPollingMode } from '../../src/kernels/event-polling.js';
import { isAutoGlmError } from '../../src/errors.js';
import { KernelRuntime } from '../../src/kernels/runtime.js';
import { mainThreadCpuMs } from '../../src/testing/proc-cpu.js';

/**
 * A kernel that only burns ALU time (a dependent FMA chain per invocation); the returned
 * function runs it and reads the sums back. The pipeline is compiled here, so that timing
 * `run` measures the GPU wait and not the compiler.
 */
function busyKernel(rt: KernelRuntime, iterations: number): () => Promise<Float32Array> {
  const device = rt.device;
  const code = `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var a = 0.0;
  for (var i = 0u; i < ${iterations}u; i++) { a = a * 0.5 + f32(g.x); }
  out[g.x] = a;
}`;
  const pipeline = device.createComputePipeline({
    layout: 'auto',
    compute: { module: device.createShaderModule({ code }), entryPoint: 'main' },
  });
  const buffer = device.createBuffer({ size: 4 * 64 * 64, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] });
  return async () => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(64);
    pass.end();
    device.queue.submit([encoder.finish()]);
    return new Float32Array(await rt.readBytes(buffer, 0, 4 * 64 * 64));
  };
}

describe('Dawn event-polling pacing (pure parts)', () => {
  it("recognises only an anonymous native callback with no arguments as Dawn's tick", () => {
    expect(looksLikeDawnTick(() => undefined, 0)).toBe(false);
    expect(looksLikeDawnTick(function named() {}, 0)).toBe(false);
    expect(looksLikeDawnTick(function named() {}.bind(null), 0)).toBe(false); // "bound named", native code
    expect(looksLikeDawnTick(Math.max, 0)).toBe(false); // native but named
    expect(looksLikeDawnTick('not a function', 0)).toBe(false);
    // a promise's resolve/reject: anonymous and native, but with one parameter
    let resolve: unknown;
    let reject: unknown;
    void new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    expect(looksLikeDawnTick(resolve, 0)).toBe(false);
    expect(looksLikeDawnTick(reject, 0)).toBe(false);
  });

  it('paces by default exactly when the adapter runs shaders on the CPU, and stops when the device is destroyed', async () => {
    expect(isEventPollingPaced()).toBe(false);
    const rt = await KernelRuntime.create({ eventPolling: 'auto' });
    try {
      expect(isEventPollingPaced()).toBe(rt.ctx.isCpuAdapter);
    } finally {
      rt.destroy();
    }
    expect(isEventPollingPaced()).toBe(false);
  });

  it('refuses an unknown mode (option or AUTOGLM_GPU_EVENT_POLLING) with a typed error, before any device exists', async () => {
    const bad = await KernelRuntime.create({ eventPolling: 'fast' as never }).catch((e: unknown) => e);
    expect(isAutoGlmError(bad, 'invalid_request')).toBe(true);
    expect((bad as Error).message).toMatch(/auto, spin or paced.*"fast"/);
    const saved = process.env.AUTOGLM_GPU_EVENT_POLLING;
    process.env.AUTOGLM_GPU_EVENT_POLLING = 'sometimes';
    try {
      const fromEnv = await KernelRuntime.create().catch((e: unknown) => e);
      expect(isAutoGlmError(fromEnv, 'invalid_request')).toBe(true);
      expect((fromEnv as { param?: string }).param).toBe('AUTOGLM_GPU_EVENT_POLLING');
    } finally {
      if (saved === undefined) delete process.env.AUTOGLM_GPU_EVENT_POLLING;
      else process.env.AUTOGLM_GPU_EVENT_POLLING = saved;
    }
    expect(isEventPollingPaced()).toBe(false);
  });

  it('maps auto to paced on CPU adapters and to spin on GPUs; explicit modes win', () => {
    expect(resolveEventPollingMode('auto', true)).toBe('paced');
    expect(resolveEventPollingMode('auto', false)).toBe('spin');
    expect(resolveEventPollingMode('spin', true)).toBe('spin');
    expect(resolveEventPollingMode('paced', false)).toBe('paced');
  });

  it('passes every other setImmediate call through (arguments and order kept) and restores the global when the last user releases', async () => {
    const original = globalThis.setImmediate;
    const releaseA = paceDawnEventPolling();
    const releaseB = paceDawnEventPolling();
    expect(globalThis.setImmediate).not.toBe(original);
    const seen: string[] = [];
    await new Promise<void>((resolve) => {
      setImmediate((x: string) => seen.push(x), 'first');
      setImmediate(
        function bound(this: { tag: string }) {
          seen.push(this.tag);
        }.bind({ tag: 'second' }),
      );
      setImmediate(resolve);
    });
    expect(seen).toEqual(['first', 'second']);
    releaseA();
    releaseA(); // idempotent: B still holds it
    expect(isEventPollingPaced()).toBe(true);
    releaseB();
    expect(isEventPollingPaced()).toBe(false);
    expect(globalThis.setImmediate).toBe(original);
  });
});

describe('Dawn event-polling pacing on the real adapter', () => {
  let rt: KernelRuntime;
  beforeAll(async () => {
    rt = await KernelRuntime.create({ eventPolling: 'paced' });
  });
  afterAll(() => rt?.destroy());

  it("still sees Dawn's tick: the callback webgpu passes to setImmediate during a wait matches", async () => {
    // If a webgpu upgrade changes how it polls, this fails and pacing is silently off.
    const paced = globalThis.setImmediate;
    const ticks: unknown[] = [];
    globalThis.setImmediate = function (fn: (...a: unknown[]) => void, ...args: unknown[]) {
      if (typeof fn === 'function' && fn.name === '' && fn.length === 0) ticks.push(fn);
      return paced(fn, ...args);
    } as typeof setImmediate;
    try {
      await busyKernel(rt, 2000)();
    } finally {
      globalThis.setImmediate = paced;
    }
    expect(ticks.length).toBeGreaterThan(0);
    expect(ticks.every((fn) => looksLikeDawnTick(fn, 0))).toBe(true);
  });

  it('waits for a long kernel without keeping the main thread busy, and reads the right values', async () => {
    const run = busyKernel(rt, 300_000);
    await run(); // first run: lazy driver work
    const before = mainThreadCpuMs();
    const t0 = performance.now();
    const out = await run();
    const wallMs = performance.now() - t0;
    const after = mainThreadCpuMs();
    // a = a * 0.5 + g converges to 2g
    for (const i of [0, 1, 7, 4095]) expect(out[i]).toBeCloseTo(2 * i, 3);
    if (Number.isNaN(before) || Number.isNaN(after)) return; // no /proc: nothing more to check
    // long enough that the 1 ms spin window and /proc's 10 ms clock ticks are a small part
    expect(wallMs).toBeGreaterThan(150);
    // Dawn's own polling keeps the main thread at about 100% of the wait; paced, a few %.
    expect((after - before) / wallMs).toBeLessThan(0.3);
  });

  it('keeps short waits short: many small readbacks in a row all complete', async () => {
    const run = busyKernel(rt, 1);
    for (let i = 0; i < 50; i++) {
      const out = await run();
      expect(out[3]).toBe(3);
    }
  });
});
