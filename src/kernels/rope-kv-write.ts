/**
 * RoPE of the q and k heads of fused QKV rows plus the write of their k and v heads into
 * the paged KV cache, as one dispatch (shaders/rope-kv-write.wgsl): what `rope` over the q
 * and k heads followed by `kvWrite` do, with one dispatch per layer fewer.
 */
import { assertF32, assertNoOverlap, assertPositiveInt, assertU32 } from './arg-checks.js';
import { assertLength } from './checks.js';
import { grid1d } from './grid.js';
import { params } from './params.js';
import type { Recorder } from './recorder.js';
import { assertKvCacheBlocks, assertKvCaches } from './kv-write.js';
import { assertRotaryDim, type RopeLayout } from './rope.js';
import type { KernelRuntime } from './runtime.js';
import type { GpuTensor } from './tensor.js';

export interface RopeKvWriteOptions {
  /** f32 rows of [q heads | k heads | v heads | anything], rowStride apart; q and k rotate in place. */
  qkv: GpuTensor;
  /** u32 [rows]: the absolute position of each row. */
  positions: GpuTensor;
  /** f32 [rotaryDim / 2], from ropeInvFreq. */
  invFreq: GpuTensor;
  /** u32 [rows]: cache slot of each row (blockId * blockSize + offsetInBlock). */
  slots: GpuTensor;
  kCache: GpuTensor;
  vCache: GpuTensor;
  rows: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Rotated values at the start of each head (partial rotary); default headDim. */
  rotaryDim?: number;
  layout: RopeLayout;
  /** Elements from one row to the next; default (nHeads + 2 * nKvHeads) * headDim. */
  rowStride?: number;
  blockSize: number;
}

export function ropeKvWrite(rt: KernelRuntime, rec: Recorder, o: RopeKvWriteOptions): void {
  const op = 'ropeKvWrite';
  const rotaryDim = o.rotaryDim ?? o.headDim;
  const heads = o.nHeads + 2 * o.nKvHeads;
  const rowStride = o.rowStride ?? heads * o.headDim;
  assertPositiveInt(op, {
    rows: o.rows,
    nHeads: o.nHeads,
    nKvHeads: o.nKvHeads,
    headDim: o.headDim,
    rotaryDim,
    rowStride,
    blockSize: o.blockSize,
  });
  if (o.headDim % 2 !== 0) throw new RangeError(`${op}: headDim ${o.headDim} must be even`);
  assertRotaryDim(op, rotaryDim, o.headDim);
  if (rowStride < heads * o.headDim) throw new RangeError(`${op}: rowStride ${rowStride} is less than (nHeads + 2 * nKvHeads) * headDim`);
  assertF32(op, o.qkv, o.invFreq);
  assertU32(op, 'positions', o.positions);
  assertU32(op, 'slots', o.slots);
  const cacheType = assertKvCaches(op, o.kCache, o.vCache);
  assertLength(op, 'qkv', o.qkv, (o.rows - 1) * rowStride + heads * o.headDim);
  assertLength(op, 'positions', o.positions, o.rows);
  assertLength(op, 'slots', o.slots, o.rows);
  assertLength(op, 'invFreq', o.invFreq, rotaryDim / 2);
  assertKvCacheBlocks(op, o.kCache, o.vCache, o);
  for (const [name, t] of [
    ['positions', o.positions],
    ['invFreq', o.invFreq],
    ['slots', o.slots],
    ['kCache', o.kCache],
    ['vCache', o.vCache],
  ] as const) {
    assertNoOverlap(op, ['qkv', name], o.qkv, t);
  }
  const n = o.rows * heads * (o.headDim / 2);
  const kernel = rt.kernel({
    shader: 'rope-kv-write',
    defines: { INTERLEAVED: o.layout === 'interleaved', KV: cacheType, F16: cacheType === 'f16' },
    bindings: ['write', 'read', 'read', 'read', 'write', 'write'],
    params: true,
  });
  rec.dispatch(
    kernel,
    [o.qkv, o.positions, o.invFreq, o.slots, o.kCache, o.vCache],
    params()
      .u32(n)
      .u32(o.nHeads)
      .u32(o.nKvHeads)
      .u32(o.headDim)
      .u32(rotaryDim / 2)
      .u32(rowStride)
      .u32(o.blockSize),
    grid1d(n, 256),
  );
}
