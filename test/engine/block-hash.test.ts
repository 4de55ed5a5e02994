import { describe, expect, it } from 'vitest';
import { extendBlockHashes, hashBlockTokens, hashRequestBlocks } from '../../src/engine/block-hash.js';

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

describe('block hashes', () => {
  it('hashes only full blocks, identically for identical prefixes and across calls', () => {
    const tokens = range(1, 40);
    const a = hashRequestBlocks(tokens, { blockSize: 16 });
    expect(a).toHaveLength(2);
    expect(hashRequestBlocks([...tokens], { blockSize: 16 })).toEqual(a);
    expect(a[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(a[0]).not.toBe(a[1]);
  });

  it('chains: a block with the same tokens but a different parent gets a different hash', () => {
    const block = range(100, 16);
    const x = hashRequestBlocks([...range(1, 16), ...block], { blockSize: 16 });
    const y = hashRequestBlocks([...range(2, 16), ...block], { blockSize: 16 });
    expect(x[0]).not.toBe(y[0]);
    expect(x[1]).not.toBe(y[1]);
    expect(x[1]).toBe(hashBlockTokens(x[0]!, block));
    expect(hashBlockTokens(null, block)).not.toBe(x[1]);
  });

  it('shares the leading hashes of a common prefix and diverges after it', () => {
    const prefix = range(7, 32);
    const x = hashRequestBlocks([...prefix, ...range(50, 16)], { blockSize: 16 });
    const y = hashRequestBlocks([...prefix, ...range(51, 16)], { blockSize: 16 });
    expect(x.slice(0, 2)).toEqual(y.slice(0, 2));
    expect(x[2]).not.toBe(y[2]);
  });

  it('is sensitive to token order and to extra keys', () => {
    expect(hashBlockTokens(null, [1, 256])).not.toBe(hashBlockTokens(null, [256, 1]));
    expect(hashBlockTokens(null, [1, 2], ['model-a'])).not.toBe(hashBlockTokens(null, [1, 2], ['model-b']));
    expect(hashBlockTokens(null, [1, 2], [])).toBe(hashBlockTokens(null, [1, 2]));
  });

  it('extends a hash list incrementally to the same result as hashing all at once', () => {
    const tokens = range(3, 70);
    const hashes = extendBlockHashes([], tokens.slice(0, 20), { blockSize: 8 });
    expect(hashes).toHaveLength(2);
    extendBlockHashes(hashes, tokens, { blockSize: 8 });
    expect(hashes).toEqual(hashRequestBlocks(tokens, { blockSize: 8 }));
    expect(hashes).toHaveLength(8);
  });
});
