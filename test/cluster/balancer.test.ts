import { describe, expect, test } from 'vitest';
import { Balancer } from '../../src/cluster/balancer.js';
import { Rng } from '../helpers/random.js';

const workers = ['a', 'b', 'c', 'd'].map((id) => ({ id, url: `http://${id}` }));

describe('Balancer', () => {
  test('power of two choices never picks the most loaded of two and spreads load evenly', () => {
    const rng = new Rng(7);
    const b = new Balancer({ random: () => rng.next() });
    const tickets = [];
    for (let i = 0; i < 400; i++) tickets.push(b.acquire(b.pick(workers)!.id, 1));
    const counts = workers.map((w) => b.outstanding(w.id).requests);
    expect(counts.reduce((s, n) => s + n, 0)).toBe(400);
    // p2c keeps the spread within a couple of requests of the mean.
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(3);
    for (const t of tickets) t.done();
    expect(workers.map((w) => b.outstanding(w.id).requests)).toEqual([0, 0, 0, 0]);
  });

  test('a loaded worker loses to an idle one whenever both are sampled', () => {
    const b = new Balancer({ random: () => 0 });
    for (let i = 0; i < 5; i++) b.acquire('a', 1);
    // random 0 samples a and b: b is idle, so b wins.
    expect(b.pick(workers)!.id).toBe('b');
  });

  test('token mode weighs requests by remaining tokens', () => {
    const b = new Balancer({ mode: 'tokens', random: () => 0 });
    b.acquire('a', 10);
    b.acquire('b', 100);
    expect(b.pick(workers.slice(0, 2))!.id).toBe('a');
    const t = b.acquire('a', 200);
    expect(b.pick(workers.slice(0, 2))!.id).toBe('b');
    t.progress(150);
    expect(b.outstanding('a').tokens).toBe(60);
    expect(b.pick(workers.slice(0, 2))!.id).toBe('a');
  });

  test('prefix affinity sends a prefix to one worker until it is too loaded, then spreads', () => {
    const rng = new Rng(3);
    const b = new Balancer({ affinity: { maxImbalance: 1.5, slack: 2 }, random: () => rng.next() });
    const first = b.pick(workers, { affinityKey: 'system: you are a cat' })!;
    for (let i = 0; i < 5; i++) expect(b.pick(workers, { affinityKey: 'system: you are a cat' })!.id).toBe(first.id);
    // Other keys land elsewhere too (rendezvous hashing spreads keys).
    const homes = new Set(Array.from({ length: 40 }, (_, i) => b.pick(workers, { affinityKey: `prefix ${i}` })!.id));
    expect(homes.size).toBe(4);
    // Load the preferred worker past the bound: affinity yields.
    for (let i = 0; i < 3; i++) b.acquire(first.id, 1);
    expect(b.pick(workers, { affinityKey: 'system: you are a cat' })!.id).not.toBe(first.id);
  });

  test('no candidates -> null; one candidate -> it', () => {
    const b = new Balancer();
    expect(b.pick([])).toBeNull();
    expect(b.pick([workers[2]!])!.id).toBe('c');
  });
});
