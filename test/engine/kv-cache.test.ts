import { describe, expect, it } from 'vitest';
import { KvCacheManager, type KvRequest } from '../../src/engine/kv-cache.js';
import type { BlockHash } from '../../src/engine/block-hash.js';

const request = (requestId: string, tokenIds: number[]): KvRequest & { tokenIds: number[] } => ({
  requestId,
  tokenIds,
  blockHashes: [] as BlockHash[],
});
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

describe('KvCacheManager', () => {
  it('grows a block table as tokens are added, one block per blockSize tokens', () => {
    const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
    const r = request('a', range(0, 10));
    expect(kv.allocateSlots(r, { numComputedTokens: 0, numNewTokens: 5 })).toEqual([0, 1]);
    expect(kv.allocateSlots(r, { numComputedTokens: 5, numNewTokens: 3 })).toEqual([0, 1]);
    expect(kv.allocateSlots(r, { numComputedTokens: 8, numNewTokens: 2 })).toEqual([0, 1, 2]);
    expect(kv.stats()).toMatchObject({ blocksTotal: 8, blocksUsed: 3, blocksFree: 5 });
    kv.freeRequest('a');
    expect(kv.stats()).toMatchObject({ blocksUsed: 0, blocksFree: 8 });
    expect(kv.blockTable('a')).toEqual([]);
  });

  it('returns null and changes nothing when the pool is short', () => {
    const kv = new KvCacheManager({ numBlocks: 3, blockSize: 4, enablePrefixCaching: true });
    const a = request('a', range(0, 8));
    const b = request('b', range(0, 8));
    kv.allocateSlots(a, { numComputedTokens: 0, numNewTokens: 8 });
    expect(kv.allocateSlots(b, { numComputedTokens: 0, numNewTokens: 8 })).toBeNull();
    expect(kv.blockTable('b')).toEqual([]);
    expect(kv.numFreeBlocks).toBe(1);
    expect(kv.allocateSlots(b, { numComputedTokens: 0, numNewTokens: 4 })).toEqual([2]);
  });

  it('caches only full computed blocks, and a later request finds them but leaves its last token', () => {
    const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
    const a = request('a', range(1, 10));
    kv.allocateSlots(a, { numComputedTokens: 0, numNewTokens: 10 });
    kv.cacheFullBlocks(a, 10); // blocks 0, 1 full; block 2 holds 2 tokens
    expect(kv.stats().blocksCached).toBe(2);

    const same = request('b', range(1, 10));
    expect(kv.findPrefixHit(same).numTokens).toBe(8);
    // Exactly two blocks long: only the first is reused, so the last token is computed.
    const aligned = request('c', range(1, 8));
    expect(kv.findPrefixHit(aligned).numTokens).toBe(4);
    const diverging = request('d', [1, 2, 3, 4, 9, 9, 9, 9, 9]);
    expect(kv.findPrefixHit(diverging).numTokens).toBe(4);
  });

  it('shares hit blocks by reference and revives freed ones without double counting free space', () => {
    const kv = new KvCacheManager({ numBlocks: 4, blockSize: 4, enablePrefixCaching: true });
    const a = request('a', range(1, 9));
    const tableA = kv.allocateSlots(a, { numComputedTokens: 0, numNewTokens: 9 })!;
    kv.cacheFullBlocks(a, 9);
    const b = request('b', [...range(1, 8), 77, 78]);
    const hitB = kv.findPrefixHit(b);
    const tableB = kv.allocateSlots(b, { numComputedTokens: 8, numNewTokens: 2, prefixHit: hitB })!;
    expect(tableB.slice(0, 2)).toEqual(tableA.slice(0, 2));
    expect(kv.stats()).toMatchObject({ blocksUsed: 4, prefixCacheQueries: 10, prefixCacheHits: 8 });
    kv.freeRequest('a');
    expect(kv.stats().blocksUsed).toBe(3); // the shared prefix is still B's
    kv.freeRequest('b');
    expect(kv.stats().blocksUsed).toBe(0);

    // All 4 blocks free, 2 of them cached: a 12-token request hitting them needs 2 + 1 new.
    const c = request('c', [...range(1, 8), 5, 6, 7, 8]);
    const hitC = kv.findPrefixHit(c);
    expect(hitC.numTokens).toBe(8);
    expect(kv.allocateSlots(c, { numComputedTokens: 8, numNewTokens: 4, prefixHit: hitC })).not.toBeNull();
    // 3 blocks used, 1 free; a request hitting nothing and needing 2 blocks must wait.
    const d = request('d', range(40, 8));
    expect(kv.allocateSlots(d, { numComputedTokens: 0, numNewTokens: 8, prefixHit: kv.findPrefixHit(d) })).toBeNull();
  });

  it('finds nothing and counts nothing with prefix caching off', () => {
    const kv = new KvCacheManager({ numBlocks: 4, blockSize: 4, enablePrefixCaching: false });
    const a = request('a', range(1, 9));
    kv.allocateSlots(a, { numComputedTokens: 0, numNewTokens: 9 });
    kv.cacheFullBlocks(a, 9);
    expect(kv.findPrefixHit(request('b', range(1, 9))).numTokens).toBe(0);
    expect(kv.stats()).toMatchObject({ blocksCached: 0, prefixCacheQueries: 0, prefixCacheHits: 0 });
  });
});
