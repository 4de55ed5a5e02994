import { describe, expect, it } from 'vitest';
import { BlockPool, FreeBlockQueue, KvBlock, type BlockId } from '../../src/engine/block-pool.js';
import { hashBlockTokens, type BlockHash } from '../../src/engine/block-hash.js';
import { isAutoGlmError } from '../../src/errors.js';

const hash = (n: number): BlockHash => hashBlockTokens(null, [n]);
const ids = (blocks: readonly KvBlock[]): number[] => blocks.map((b) => b.blockId);

describe('FreeBlockQueue', () => {
  it('pops from the front, appends and prepends, removes from the middle', () => {
    const blocks = [0, 1, 2, 3].map((i) => new KvBlock(i as BlockId));
    const q = new FreeBlockQueue(blocks);
    expect(q.ids()).toEqual([0, 1, 2, 3]);
    q.remove(blocks[2]!);
    expect(q.ids()).toEqual([0, 1, 3]);
    expect(q.popFront().blockId).toBe(0);
    q.append(blocks[0]!);
    q.prepend(blocks[2]!);
    expect(q.ids()).toEqual([2, 1, 3, 0]);
    expect(q.length).toBe(4);
  });

  it('refuses to insert a block twice or remove one that is not there', () => {
    const b = new KvBlock(0 as BlockId);
    const q = new FreeBlockQueue([b]);
    expect(() => q.append(b)).toThrow(/already free/);
    q.remove(b);
    expect(() => q.remove(b)).toThrow(/not free/);
    expect(() => q.popFront()).toThrow(/empty/);
  });
});

describe('BlockPool', () => {
  it('hands out blocks with refCount 1 and takes them back', () => {
    const pool = new BlockPool({ numBlocks: 4, enablePrefixCaching: true });
    const got = pool.getNewBlocks(3);
    expect(ids(got)).toEqual([0, 1, 2]);
    expect(got.every((b) => b.refCount === 1)).toBe(true);
    expect(pool.numFreeBlocks).toBe(1);
    pool.freeBlocks(got);
    expect(pool.numFreeBlocks).toBe(4);
  });

  it('counts references: a shared block is free only when its last user lets go', () => {
    const pool = new BlockPool({ numBlocks: 2, enablePrefixCaching: true });
    const [b] = pool.getNewBlocks(1);
    pool.touch([b!]);
    expect(b!.refCount).toBe(2);
    pool.freeBlocks([b!]);
    expect(pool.numFreeBlocks).toBe(1);
    pool.freeBlocks([b!]);
    expect(pool.numFreeBlocks).toBe(2);
    let err: unknown;
    try {
      pool.freeBlocks([b!]);
    } catch (e) {
      err = e;
    }
    expect(isAutoGlmError(err, 'internal_error')).toBe(true);
  });

  it('touching a cached free block revives it out of the free list', () => {
    const pool = new BlockPool({ numBlocks: 3, enablePrefixCaching: true });
    const [b] = pool.getNewBlocks(1);
    expect(pool.cacheBlock(b!, hash(1))).toBe(true);
    pool.freeBlocks([b!]);
    expect(pool.freeBlockIds()).toEqual([1, 2, 0]);
    expect(pool.getCachedBlock(hash(1))).toBe(b);
    pool.touch([b!]);
    expect(b!.refCount).toBe(1);
    expect(pool.freeBlockIds()).toEqual([1, 2]);
  });

  it('evicts in LRU order: unhashed blocks first, then hashed ones in the order freed', () => {
    const pool = new BlockPool({ numBlocks: 5, enablePrefixCaching: true });
    const blocks = pool.getNewBlocks(5);
    pool.cacheBlock(blocks[0]!, hash(10));
    pool.cacheBlock(blocks[1]!, hash(11));
    pool.cacheBlock(blocks[3]!, hash(13));
    pool.freeBlocks([blocks[3]!, blocks[2]!]); // 3 hashed -> back, 2 unhashed -> front
    pool.freeBlocks([blocks[1]!, blocks[4]!, blocks[0]!]);
    expect(pool.freeBlockIds()).toEqual([4, 2, 3, 1, 0]);

    // Popping the two unhashed blocks evicts nothing; the next pop evicts block 3's prefix.
    pool.getNewBlocks(2);
    expect(pool.numEvictions).toBe(0);
    const [third] = pool.getNewBlocks(1);
    expect(third!.blockId).toBe(3);
    expect(third!.blockHash).toBeNull();
    expect(pool.getCachedBlock(hash(13))).toBeNull();
    expect(pool.getCachedBlock(hash(11))!.blockId).toBe(1);
    expect(pool.numEvictions).toBe(1);
    expect(pool.numCachedBlocks).toBe(2);
  });

  it('keeps one block per hash and caches nothing when prefix caching is off', () => {
    const pool = new BlockPool({ numBlocks: 3, enablePrefixCaching: true });
    const [a, b] = pool.getNewBlocks(2);
    expect(pool.cacheBlock(a!, hash(1))).toBe(true);
    expect(pool.cacheBlock(b!, hash(1))).toBe(false);
    expect(b!.blockHash).toBeNull();
    expect(pool.getCachedBlock(hash(1))).toBe(a);

    const off = new BlockPool({ numBlocks: 1, enablePrefixCaching: false });
    const [c] = off.getNewBlocks(1);
    expect(off.cacheBlock(c!, hash(1))).toBe(false);
    expect(off.getCachedBlock(hash(1))).toBeNull();
  });

  it('rejects a pool without blocks and over-asking with typed errors', () => {
    expect(() => new BlockPool({ numBlocks: 0, enablePrefixCaching: true })).toThrow(/at least one block/);
    const pool = new BlockPool({ numBlocks: 2, enablePrefixCaching: true });
    expect(() => pool.getNewBlocks(3)).toThrow(/asked for 3 blocks, 2 free/);
    expect(pool.numFreeBlocks).toBe(2);
  });
});
