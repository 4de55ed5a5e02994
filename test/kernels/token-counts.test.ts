import { describe, expect, it } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { TokenCounts } from '../../src/kernels/token-counts.js';
import { Rng } from '../helpers/random.js';
import { useRuntime } from '../helpers/gpu.js';

const runtime = useRuntime();

describe('TokenCounts', () => {
  it('resetSlot writes prompt presence and generated counts, and clears what was there', async () => {
    const rt = runtime();
    const counts = TokenCounts.create(rt, { slots: 3, vocab: 129 });
    counts.resetSlot(1, [5, 5, 7, 128], [7, 7, 9]);
    const s = await counts.readSlot(1);
    expect(Array.from(s.inPrompt).flatMap((v, i) => (v ? [i] : []))).toEqual([5, 7, 128]);
    expect(s.generated[7]).toBe(2);
    expect(s.generated[9]).toBe(1);
    expect(s.generated[5]).toBe(0);
    expect(s.generated.reduce((a, b) => a + b, 0)).toBe(3);
    counts.resetSlot(1, [0]);
    const again = await counts.readSlot(1);
    expect(Array.from(again.inPrompt).flatMap((v, i) => (v ? [i] : []))).toEqual([0]);
    expect(again.generated.every((c) => c === 0)).toBe(true);
    // neighbours untouched
    expect((await counts.readSlot(0)).generated.every((c) => c === 0)).toBe(true);
    counts.destroy();
  });

  for (const vocab of [1, 7, 33, 4097, 151936]) {
    it(`recordSampled counts every row's token in its slot, vocab=${vocab}`, async () => {
      const rt = runtime();
      const slots = 4;
      const counts = TokenCounts.create(rt, { slots, vocab });
      for (let s = 0; s < slots; s++) counts.resetSlot(s, [vocab - 1]);
      const rng = new Rng(vocab);
      const host = Array.from({ length: slots }, () => new Map<number, number>());
      for (let step = 0; step < 5; step++) {
        // 37 rows: several rows share a slot (atomic adds) and some have no slot
        const rows = 37;
        const ids = new Uint32Array(rows).map(() => rng.int(Math.min(vocab, 5)));
        const rowSlots = new Int32Array(rows).map(() => rng.int(slots + 1) - 1);
        const rec = rt.recorder();
        counts.recordSampled(rec, rt.upload('u32', ids), rt.upload('i32', rowSlots));
        await rec.submit();
        for (let r = 0; r < rows; r++) {
          const s = rowSlots[r]!;
          if (s >= 0) host[s]!.set(ids[r]!, (host[s]!.get(ids[r]!) ?? 0) + 1);
        }
      }
      for (let s = 0; s < slots; s++) {
        const got = await counts.readSlot(s);
        const want = new Uint32Array(vocab);
        for (const [id, c] of host[s]!) want[id] = c;
        expect(Array.from(got.generated)).toEqual(Array.from(want));
        expect(got.inPrompt[vocab - 1]).toBe(1);
      }
      counts.destroy();
    });
  }

  it("addGenerated queues tokens that flushQueued adds on the GPU, as resetSlot would count them; dropQueued forgets a slot's", async () => {
    const rt = runtime();
    const counts = TokenCounts.create(rt, { slots: 3, vocab: 300 });
    counts.resetSlot(0, [1, 2], [3]);
    counts.resetSlot(2, [9], []);
    // more than the first queue buffer holds, across two slots, one of them dropped
    const added = Array.from({ length: 150 }, (_, i) => (i * 37) % 300);
    counts.addGenerated(0, added);
    counts.addGenerated(1, [5, 5, 6]);
    counts.addGenerated(2, [9, 10]);
    counts.dropQueued(1);
    const rec = rt.recorder();
    counts.flushQueued(rec);
    await rec.submit();
    const want = TokenCounts.create(rt, { slots: 3, vocab: 300 });
    want.resetSlot(0, [1, 2], [3, ...added]);
    want.resetSlot(2, [9], [9, 10]);
    for (const slot of [0, 1, 2]) {
      const [got, ref] = [await counts.readSlot(slot), await want.readSlot(slot)];
      expect(Array.from(got.generated), `slot ${slot}`).toEqual(Array.from(ref.generated));
      expect(Array.from(got.inPrompt), `slot ${slot}`).toEqual(Array.from(ref.inPrompt));
    }
    // the queue is empty after a flush: a second one adds nothing
    const again = rt.recorder();
    counts.flushQueued(again);
    await again.submit();
    expect((await counts.readSlot(2)).generated[10]).toBe(1);
    expect(() => counts.addGenerated(3, [1])).toThrow();
    expect(() => counts.addGenerated(0, [300])).toThrow();
    counts.destroy();
    want.destroy();
  });

  it('rejects bad slots and token ids, and tables larger than one binding', () => {
    const rt = runtime();
    const counts = TokenCounts.create(rt, { slots: 2, vocab: 10 });
    expect(() => counts.resetSlot(2, [])).toThrow(RangeError);
    let caught: unknown;
    try {
      counts.resetSlot(0, [10]);
    } catch (e) {
      caught = e;
    }
    expect(isAutoGlmError(caught, 'invalid_request')).toBe(true);
    counts.destroy();
    const max = TokenCounts.maxSlots(rt, 151936);
    expect(max).toBeGreaterThan(0);
    caught = undefined;
    try {
      TokenCounts.create(rt, { slots: max + 1, vocab: 151936 });
    } catch (e) {
      caught = e;
    }
    expect(isAutoGlmError(caught, 'gpu_out_of_memory')).toBe(true);
  });
});
