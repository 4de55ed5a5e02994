/**
 * The KV-cache manager: gives requests slots in the paged cache. It keeps each request's
 * list of blocks (its block table), finds prefix-cache hits, registers newly full blocks
 * by their chained hash, and frees a request's blocks. The scheduler asks it for slots;
 * `allocateSlots` returning null is the scheduler's signal to preempt. Only this module
 * talks to the block pool.
 */
import { AutoGlmError } from '../errors.js';
import { extendBlockHashes, type BlockHash, type BlockHashExtraKeys } from './block-hash.js';
import { BlockPool, type BlockId, type KvBlock } from './block-pool.js';

/** What the manager needs to know of a request. */
export interface KvRequest {
  readonly requestId: string;
  readonly tokenIds: readonly number[];
  /** Chained hashes of full blocks of tokenIds; the manager extends this list. */
  readonly blockHashes: BlockHash[];
  /** The LoRA adapter whose KV the blocks hold, and which load of it (absent: the base model's). */
  readonly lora?: string | undefined;
  readonly loraId?: number | undefined;
}

/** Leading blocks of a request found in the prefix cache. Opaque to the scheduler. */
export interface PrefixHit {
  readonly blocks: readonly KvBlock[];
  /** Tokens covered by the hit (blocks.length * blockSize). */
  readonly numTokens: number;
  /** Tokens looked up (the request's length), for the queries counter. */
  readonly numQueryTokens: number;
}

export interface KvCacheManagerOptions {
  numBlocks: number;
  blockSize: number;
  enablePrefixCaching: boolean;
  /** Mixed into every block hash (e.g. the model name). */
  hashExtraKeys?: BlockHashExtraKeys;
}

export interface KvCacheStats {
  blocksTotal: number;
  /** Blocks referenced by at least one request. */
  blocksUsed: number;
  /** Blocks in the free list (some still hold a reusable cached prefix). */
  blocksFree: number;
  /** Blocks registered in the prefix cache, used or free. */
  blocksCached: number;
  /** In tokens, like vLLM's prefix_cache_queries / prefix_cache_hits. */
  prefixCacheQueries: number;
  prefixCacheHits: number;
  /** Cached blocks reused for new content. */
  cacheEvictions: number;
}

/** No cached prefix (also what a request that must compute every row uses: prompt scoring). */
export const NO_HIT: PrefixHit = { blocks: [], numTokens: 0, numQueryTokens: 0 };

export class KvCacheManager {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly enablePrefixCaching: boolean;
  private readonly pool: BlockPool;
  private readonly hashExtraKeys: BlockHashExtraKeys;
  private readonly requestBlocks = new Map<string, KvBlock[]>();
  /** Per request, how many leading blocks are already registered (or came from) the cache. */
  private readonly numCachedBlocks = new Map<string, number>();
  private queries = 0;
  private hits = 0;

  constructor(options: KvCacheManagerOptions) {
    if (!Number.isInteger(options.blockSize) || options.blockSize < 1) {
      throw new AutoGlmError('invalid_request', `KV block size must be a positive integer (got ${options.blockSize})`);
    }
    this.blockSize = options.blockSize;
    this.numBlocks = options.numBlocks;
    this.enablePrefixCaching = options.enablePrefixCaching;
    this.hashExtraKeys = options.hashExtraKeys ?? [];
    this.pool = new BlockPool({ numBlocks: options.numBlocks, enablePrefixCaching: options.enablePrefixCaching });
  }

  /**
   * The longest run of the request's leading full blocks found in the prefix cache. At
   * least the last token is left uncached so that the step computing it yields a logit
   * to sample. Takes no references: pass the hit to allocateSlots.
   */
  findPrefixHit(request: KvRequest): PrefixHit {
    if (!this.enablePrefixCaching) return NO_HIT;
    const hashes = this.hashesOf(request);
    const maxBlocks = Math.floor((request.tokenIds.length - 1) / this.blockSize);
    const blocks: KvBlock[] = [];
    for (let i = 0; i < Math.min(maxBlocks, hashes.length); i++) {
      const b = this.pool.getCachedBlock(hashes[i]!);
      if (b === null) break;
      blocks.push(b);
    }
    return { blocks, numTokens: blocks.length * this.blockSize, numQueryTokens: request.tokenIds.length };
  }

  /**
   * Makes room for `numNewTokens` more tokens after the request's `numComputedTokens`
   * (which include a prefix hit, when given: only for a request holding no blocks yet).
   * Returns the request's whole block table, or null, changing nothing, when the pool
   * lacks free blocks.
   */
  allocateSlots(request: KvRequest, options: { numComputedTokens: number; numNewTokens: number; prefixHit?: PrefixHit }): BlockId[] | null {
    const hit = options.prefixHit ?? NO_HIT;
    const held = this.requestBlocks.get(request.requestId) ?? [];
    if (hit.blocks.length > 0 && held.length > 0) {
      throw new AutoGlmError('internal_error', `request ${request.requestId}: prefix hit for a request that holds blocks`);
    }
    const totalTokens = options.numComputedTokens + options.numNewTokens;
    const numNeeded = Math.ceil(totalTokens / this.blockSize) - held.length - hit.blocks.length;
    // Hit blocks sitting in the free list stop being free once referenced.
    const revived = hit.blocks.reduce((n, b) => n + (b.refCount === 0 ? 1 : 0), 0);
    if (numNeeded > this.pool.numFreeBlocks - revived) return null;

    // Reference the hit blocks before popping new ones, so popping cannot evict them.
    this.pool.touch(hit.blocks);
    const blocks = held.length > 0 ? held : [...hit.blocks];
    if (numNeeded > 0) blocks.push(...this.pool.getNewBlocks(numNeeded));
    this.requestBlocks.set(request.requestId, blocks);
    if (hit.blocks.length > 0) this.numCachedBlocks.set(request.requestId, hit.blocks.length);
    if (hit.numQueryTokens > 0) {
      this.queries += hit.numQueryTokens;
      this.hits += hit.numTokens;
    }
    return blocks.map((b) => b.blockId);
  }

  /** Registers the request's blocks made full by its first numComputedTokens tokens. */
  cacheFullBlocks(request: KvRequest, numComputedTokens: number): void {
    if (!this.enablePrefixCaching) return;
    const blocks = this.requestBlocks.get(request.requestId);
    if (blocks === undefined) return;
    const numFull = Math.min(Math.floor(numComputedTokens / this.blockSize), blocks.length);
    const from = this.numCachedBlocks.get(request.requestId) ?? 0;
    if (numFull <= from) return;
    const hashes = this.hashesOf(request);
    for (let i = from; i < numFull; i++) this.pool.cacheBlock(blocks[i]!, hashes[i]!);
    this.numCachedBlocks.set(request.requestId, numFull);
  }

  /** Releases every block of the request (tail first, so its tail is evicted first). */
  freeRequest(requestId: string): void {
    const blocks = this.requestBlocks.get(requestId);
    this.requestBlocks.delete(requestId);
    this.numCachedBlocks.delete(requestId);
    if (blocks !== undefined) this.pool.freeBlocks([...blocks].reverse());
  }

  blockTable(requestId: string): BlockId[] {
    return (this.requestBlocks.get(requestId) ?? []).map((b) => b.blockId);
  }

  get numFreeBlocks(): number {
    return this.pool.numFreeBlocks;
  }

  /** Free block ids in eviction order (tests and debugging). */
  freeBlockIds(): BlockId[] {
    return this.pool.freeBlockIds();
  }

  stats(): KvCacheStats {
    return {
      blocksTotal: this.numBlocks,
      blocksUsed: this.numBlocks - this.pool.numFreeBlocks,
      blocksFree: this.pool.numFreeBlocks,
      blocksCached: this.pool.numCachedBlocks,
      prefixCacheQueries: this.queries,
      prefixCacheHits: this.hits,
      cacheEvictions: this.pool.numEvictions,
    };
  }

  private hashesOf(request: KvRequest): readonly BlockHash[] {
    return extendBlockHashes(request.blockHashes, request.tokenIds, {
      blockSize: this.blockSize,
      extraKeys: request.lora === undefined ? this.hashExtraKeys : [...this.hashExtraKeys, 'lora', request.lora, request.loraId ?? 0],
    });
  }
}
