import { describe, expect, it } from 'vitest';
import { moeGroup, type MoeGroupOptions } from '../../src/kernels/moe-group.js';
import type { KernelRuntime } from '../../src/kernels/runtime.js';
import { sliceTensor } from '../../src/kernels/tensor.js';
import { poisoned, useRuntime } from '../helpers/gpu.js';
import { Rng } from '../helpers/random.js';
import { moeGroupRef } from '../reference/moe-group.js';

const runtime = useRuntime();
const POISON = 0xdeadbeef;

/** Random ids with repeats; with `outOfRange`, every fifth is out of range (experts, experts + 7, 2^32 - 1 in turn). */
function randomIds(rng: Rng, pairs: number, experts: number, outOfRange: boolean): Uint32Array {
  const ids = new Uint32Array(pairs);
  for (let i = 0; i < pairs; i++) ids[i] = rng.int(experts);
  if (outOfRange) {
    const bad = [experts, experts + 7, 0xffffffff];
    for (let i = 2; i < pairs; i += 5) ids[i] = bad[((i - 2) / 5) % bad.length]!;
  }
  return ids;
}

/** Each group of `order` sorted, so that orders differing only inside groups compare equal. */
function sortedGroups(order: Uint32Array, offsets: Uint32Array): number[] {
  const out: number[] = [];
  for (let e = 0; e + 1 < offsets.length; e++) out.push(...Array.from(order.subarray(offsets[e]!, offsets[e + 1]!)).sort((a, b) => a - b));
  return out;
}

/**
 * Groups `ids` on the GPU with offsets and order after `pad` poisoned elements of their
 * buffers, and checks them against the reference: offsets exactly, each group's pairs as a
 * set, and order past the valid pairs left poisoned.
 */
async function expectGroupsMatch(rt: KernelRuntime, ids: Uint32Array, experts: number, pad = 0): Promise<void> {
  const pairs = ids.length;
  const idsHost = new Uint32Array(pad + pairs).fill(1);
  idsHost.set(ids, pad);
  const idsAll = rt.upload('u32', idsHost);
  const offsets = poisoned(rt, 'u32', pad + experts + 1);
  const order = poisoned(rt, 'u32', pad + pairs);
  try {
    const rec = rt.recorder();
    moeGroup(rt, rec, {
      ids: sliceTensor(idsAll, pad, pairs),
      pairs,
      experts,
      offsets: sliceTensor(offsets, pad, experts + 1),
      order: sliceTensor(order, pad, pairs),
    });
    await rec.submit();
    const gotOffsets = (await rt.read(offsets)) as Uint32Array;
    const gotOrder = (await rt.read(order)) as Uint32Array;
    const want = moeGroupRef(ids, experts);
    expect(Array.from(gotOffsets.subarray(0, pad)).every((v) => v === POISON)).toBe(true);
    expect(Array.from(gotOffsets.subarray(pad))).toEqual(Array.from(want.offsets));
    const valid = want.order.length;
    expect(sortedGroups(gotOrder.subarray(pad, pad + valid), want.offsets)).toEqual(Array.from(want.order));
    expect(Array.from(gotOrder.subarray(0, pad)).every((v) => v === POISON)).toBe(true);
    expect(Array.from(gotOrder.subarray(pad + valid)).every((v) => v === POISON)).toBe(true);
  } finally {
    for (const t of [idsAll, offsets, order]) rt.destroyBuffer(t.buffer);
  }
}

describe('moeGroup: pairs grouped by expert against the reference', () => {
  for (const pairs of [1, 7, 64, 129, 4096, 16384]) {
    for (const experts of [1, 3, 16, 128, 4096]) {
      const outOfRange = pairs >= 7;
      it(`pairs=${pairs} experts=${experts}${outOfRange ? ' some ids out of range' : ''}`, async () => {
        const rng = new Rng(pairs * 7919 + experts);
        await expectGroupsMatch(runtime(), randomIds(rng, pairs, experts, outOfRange), experts);
      });
    }
  }

  it('every id out of range: all groups empty', async () => {
    await expectGroupsMatch(runtime(), Uint32Array.from([5, 9, 0xffffffff, 5]), 5);
  });

  it('one expert takes every pair, the others none', async () => {
    await expectGroupsMatch(runtime(), new Uint32Array(300).fill(2), 16);
  });

  it('tensors at unaligned offsets', async () => {
    await expectGroupsMatch(runtime(), randomIds(new Rng(3), 129, 33, true), 33, 3);
  });

  it('offsets and order in one buffer', async () => {
    const rt = runtime();
    const ids = randomIds(new Rng(4), 100, 16, true);
    const scratch = poisoned(rt, 'u32', 512);
    const rec = rt.recorder();
    const offsets = sliceTensor(scratch, 0, 17);
    const order = sliceTensor(scratch, 256, 100);
    moeGroup(rt, rec, { ids: rt.upload('u32', ids), pairs: 100, experts: 16, offsets, order });
    await rec.submit();
    const got = (await rt.read(scratch)) as Uint32Array;
    const want = moeGroupRef(ids, 16);
    expect(Array.from(got.subarray(0, 17))).toEqual(Array.from(want.offsets));
    expect(sortedGroups(got.subarray(256, 256 + want.order.length), want.offsets)).toEqual(Array.from(want.order));
  });

  it('refuses bad arguments before recording', async () => {
    const rt = runtime();
    const rec = rt.recorder();
    const base: MoeGroupOptions = {
      ids: rt.tensor('u32', 8),
      pairs: 8,
      experts: 4,
      offsets: rt.tensor('u32', 5),
      order: rt.tensor('u32', 8),
    };
    const call = (o: Partial<MoeGroupOptions>) => () => moeGroup(rt, rec, { ...base, ...o });
    expect(call({})).not.toThrow();
    const recorded = rec.dispatchCount;
    for (const bad of [0, -1, 2.5, NaN]) {
      expect(call({ pairs: bad }), `pairs ${bad}`).toThrow(RangeError);
      expect(call({ experts: bad }), `experts ${bad}`).toThrow(RangeError);
    }
    expect(call({ experts: 4097, offsets: rt.tensor('u32', 4098) })).toThrow(/experts must be at most 4096/);
    expect(call({ ids: rt.tensor('f32', 8) })).toThrow(/ids must be u32/);
    expect(call({ offsets: rt.tensor('i32', 5) })).toThrow(/offsets must be u32/);
    expect(call({ order: rt.tensor('f32', 8) })).toThrow(/order must be u32/);
    expect(call({ ids: rt.tensor('u32', 7) })).toThrow(/ids has 7 elements, needs 8/);
    expect(call({ offsets: rt.tensor('u32', 4) })).toThrow(/offsets has 4 elements, needs 5/);
    expect(call({ order: rt.tensor('u32', 7) })).toThrow(/order has 7 elements, needs 8/);
    const shared = rt.tensor('u32', 64);
    expect(call({ offsets: sliceTensor(shared, 0, 5), order: sliceTensor(shared, 4, 8) })).toThrow(/offsets and order overlap/);
    expect(call({ ids: sliceTensor(shared, 0, 8), order: sliceTensor(shared, 7, 8) })).toThrow(/ids and order overlap/);
    // apart, but closer than the storage offset alignment: the bindings would overlap
    expect(call({ offsets: sliceTensor(shared, 0, 5), order: sliceTensor(shared, 20, 8) })).toThrow(/offsets and order share a buffer/);
    // ids read where order is written, however far apart: WebGPU refuses the buffer in both roles
    const wide = rt.tensor('u32', 4096);
    expect(call({ ids: sliceTensor(wide, 0, 8), order: sliceTensor(wide, 2048, 8) })).toThrow(/order and ids share a buffer/);
    expect(rec.dispatchCount).toBe(recorded);
    await rec.submit();
  });
});
