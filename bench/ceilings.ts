/**
 * The two ceilings a kernel's speed is judged against, measured on the running adapter:
 * memory bandwidth (a read kernel over a buffer much larger than any cache, and
 * copyBufferToBuffer) and arithmetic rate (a register-only FMA kernel). The engine
 * benchmark reuses `measureCeilings` for its bandwidth bound; `ceilingProbes` lets a
 * benchmark interleave a ceiling with the kernel it judges, so that both see the same
 * machine load.
 */
import { params } from '../src/kernels/params.js';
import type { Recorder } from '../src/kernels/recorder.js';
import type { KernelRuntime } from '../src/kernels/runtime.js';
import { timeGpu, type TimeOptions, type Timing } from './report.js';

export interface Ceilings {
  /** Read kernel: bytes read / time, GB/s (1e9 bytes). */
  readGBps: number;
  /** copyBufferToBuffer: bytes copied / time, GB/s (each byte is read once and written once). */
  copyGBps: number;
  /** FMA kernel: GFLOP/s counting a multiply-add as 2 flops. */
  fmaGflops: number;
  readBytes: number;
  copyBytes: number;
  timings: { read: Timing; copy: Timing; fma: Timing };
}

export interface CeilingOptions extends TimeOptions {
  /** Bytes the read kernel streams (default 256 MiB: far past any CPU or GPU cache). */
  readBytes?: number;
}

/** Recorded work of known size: `amount` bytes (read, copy) or flops (fma) per repetition. */
export interface Probe {
  record(rec: Recorder): void;
  amount: number;
  destroy(): void;
}

const WG = 64;

export function readProbe(rt: KernelRuntime, totalBytes = 256 * 2 ** 20): Probe {
  // one binding holds at most maxBindingBytes: the buffer is read as several bindings
  const chunk = Math.min(totalBytes, rt.maxBindingBytes - (rt.maxBindingBytes % 16));
  const chunks = Math.ceil(totalBytes / chunk);
  const buffers = Array.from({ length: chunks }, (_, i) =>
    rt.createBuffer(Math.min(chunk, totalBytes - i * chunk), undefined, 'bench-read'),
  );
  // non-zero contents (a fresh buffer may be lazily cleared and cheap to read)
  const fill = new Float32Array(1 << 20).map((_, i) => (i % 7) * 0.25);
  for (const b of buffers)
    for (let off = 0; off < b.size; off += fill.byteLength)
      rt.device.queue.writeBuffer(b, off, fill, 0, Math.min(fill.length, (b.size - off) / 4));
  const blocked = rt.ctx.isCpuAdapter;
  const groups = blocked ? 64 : 8192;
  const sink = rt.tensor('f32', groups * WG, 'bench-read-sink');
  const kernel = rt.kernel({ shader: 'bench-read', defines: { WG, BLOCKED: blocked }, bindings: ['read', 'write'], params: true });
  return {
    amount: buffers.reduce((s, b) => s + b.size, 0),
    record(rec) {
      for (const b of buffers) {
        const n4 = b.size / 16;
        const span = blocked ? Math.ceil(n4 / groups / WG) * WG : groups * WG;
        rec.dispatch(kernel, [{ buffer: b, offset: 0, size: b.size }, sink], params().u32(n4).u32(span), [groups]);
      }
    },
    destroy() {
      for (const b of buffers) rt.destroyBuffer(b);
      rt.destroyBuffer(sink.buffer);
    },
  };
}

/** `muladd`: a multiply then an add, as the matmul kernels write it, instead of fma(). */
export function fmaProbe(rt: KernelRuntime, muladd = false): Probe {
  const groups = rt.ctx.isCpuAdapter ? 64 : 16384;
  const iterations = rt.ctx.isCpuAdapter ? 4096 : 16384;
  const threads = groups * WG;
  const sink = rt.tensor('f32', threads, 'bench-fma-sink');
  const kernel = rt.kernel({ shader: 'bench-fma', defines: { WG, MULADD: muladd }, bindings: ['write'], params: true });
  return {
    // 8 chains of vec4 multiply-adds per iteration, 2 flops each
    amount: threads * iterations * 8 * 4 * 2,
    record(rec) {
      rec.dispatch(kernel, [sink], params().u32(iterations).f32(0.999).f32(0.001), [groups]);
    },
    destroy() {
      rt.destroyBuffer(sink.buffer);
    },
  };
}

async function timeProbe(rt: KernelRuntime, probe: Probe, o: TimeOptions): Promise<Timing> {
  try {
    return await timeGpu(rt, (rec) => probe.record(rec), o);
  } finally {
    probe.destroy();
  }
}

export async function measureCeilings(rt: KernelRuntime, o: CeilingOptions = {}): Promise<Ceilings> {
  const readP = readProbe(rt, o.readBytes);
  const readBytes = readP.amount;
  const read = await timeProbe(rt, readP, o);
  const copyBytes = Math.min(128 * 2 ** 20, rt.ctx.limits.maxBufferSize);
  const src = rt.createBuffer(copyBytes, undefined, 'bench-copy-src');
  const dst = rt.createBuffer(copyBytes, undefined, 'bench-copy-dst');
  const copy = await timeGpu(
    rt,
    (rec) => rec.copy({ buffer: src, offset: 0, size: copyBytes }, { buffer: dst, offset: 0, size: copyBytes }),
    o,
  );
  rt.destroyBuffer(src);
  rt.destroyBuffer(dst);
  const fmaP = fmaProbe(rt);
  const flops = fmaP.amount;
  const fmaA = await timeProbe(rt, fmaP, o);
  const fmaB = await timeProbe(rt, fmaProbe(rt, true), o);
  const fma = fmaA.medianMs <= fmaB.medianMs ? fmaA : fmaB;
  return {
    readGBps: readBytes / read.medianMs / 1e6,
    copyGBps: copyBytes / copy.medianMs / 1e6,
    fmaGflops: flops / fma.medianMs / 1e6,
    readBytes,
    copyBytes,
    timings: { read, copy, fma },
  };
}
