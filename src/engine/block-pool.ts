/**
 * The block pool: owns every KV block's reference count, the free list and the
 * hash-to-block map of the prefix cache. Only the KV-cache manager talks to it.
 *
 * A free block may still hold a cached prefix (it has a hash): it stays findable by that
 * hash until it is popped for new use, which evicts it. The free list is therefore also
 * the eviction order: a doubly linked list with dummy ends (O(1) pop from the front,
 * append to the back, and removal from the middle when a cache hit revives a free block).
 */
import { AutoGlmError } from '../errors.js';
import type { BlockHash } from './block-hash.js';

/** Index of a block in the GPU KV cache (what block tables hold). */
export type BlockId = number & { readonly __brand: 'BlockId' };

export class KvBlock {
  readonly blockId: BlockId;
  /** Running requests using this block; 0 means it is in the free list. */
  refCount = 0;
  /** Set once the block is full and registered in the prefix cache. */
  blockHash: BlockHash | null = null;
  /** Free-list links (null when not in the list). */
  prev: KvBlock | null = null;
  next: KvBlock | null = null;

  constructor(blockId: BlockId) {
    this.blockId = blockId;
  }
}

/** Doubly linked list of free blocks; the front is evicted first. */
export class FreeBlockQueue {
  private readonly head: KvBlock;
  private readonly tail: KvBlock;
  private count = 0;

  constructor(blocks: readonly KvBlock[]) {
    // Dummy ends (id -1) so insertion and removal never special-case an empty list.
    this.head = new KvBlock(-1 as BlockId);
    this.tail = new KvBlock(-1 as BlockId);
    this.head.next = this.tail;
    this.tail.prev = this.head;
    for (const b of blocks) this.append(b);
  }

  get length(): number {
    return this.count;
  }

  popFront(): KvBlock {
    const b = this.head.next!;
    if (b === this.tail) throw new AutoGlmError('internal_error', 'KV block pool: free list is empty');
    this.remove(b);
    return b;
  }

  remove(b: KvBlock): void {
    if (b.prev === null || b.next === null) throw new AutoGlmError('internal_error', `KV block ${b.blockId} is not free`);
    b.prev.next = b.next;
    b.next.prev = b.prev;
    b.prev = b.next = null;
    this.count--;
  }

  append(b: KvBlock): void {
    this.insertBefore(this.tail, b);
  }

  prepend(b: KvBlock): void {
    this.insertBefore(this.head.next!, b);
  }

  /** Block ids front to back (tests and debugging). */
  ids(): BlockId[] {
    const out: BlockId[] = [];
    for (let b = this.head.next!; b !== this.tail; b = b.next!) out.push(b.blockId);
    return out;
  }

  private insertBefore(at: KvBlock, b: KvBlock): void {
    if (b.prev !== null || b.next !== null) throw new AutoGlmError('internal_error', `KV block ${b.blockId} is already free`);
    b.prev = at.prev!;
    b.next = at;
    at.prev!.next = b;
    at.prev = b;
    this.count++;
  }
}

export interface BlockPoolOptions {
  numBlocks: number;
  /** When false, blocks are never registered by hash and getCachedBlock always misses. */
  enablePrefixCaching: boolean;
}

export class BlockPool {
  readonly numBlocks: number;
  readonly enablePrefixCaching: boolean;
  private readonly blocks: KvBlock[];
  private readonly freeQueue: FreeBlockQueue;
  /** One block per hash: a second block computing the same prefix is simply not registered. */
  private readonly cached = new Map<BlockHash, KvBlock>();
  private evictions = 0;

  constructor(options: BlockPoolOptions) {
    if (!Number.isInteger(options.numBlocks) || options.numBlocks < 1) {
      throw new AutoGlmError('invalid_request', `KV block pool needs at least one block (got ${options.numBlocks})`);
    }
    this.numBlocks = options.numBlocks;
    this.enablePrefixCaching = options.enablePrefixCaching;
    this.blocks = Array.from({ length: options.numBlocks }, (_, i) => new KvBlock(i as BlockId));
    this.freeQueue = new FreeBlockQueue(this.blocks);
  }

  get numFreeBlocks(): number {
    return this.freeQueue.length;
  }

  /** Blocks registered in the prefix cache, in use or free. */
  get numCachedBlocks(): number {
    return this.cached.size;
  }

  /** Cached blocks evicted to make room for new ones so far. */
  get numEvictions(): number {
    return this.evictions;
  }

  block(blockId: BlockId): KvBlock {
    const b = this.blocks[blockId];
    if (b === undefined) throw new AutoGlmError('internal_error', `KV block ${blockId} does not exist`);
    return b;
  }

  getCachedBlock(hash: BlockHash): KvBlock | null {
    return this.cached.get(hash) ?? null;
  }

  /**
   * Pops n blocks from the front of the free list (evicting their cached prefix) with
   * refCount 1. The caller checks numFreeBlocks first; asking for too many is a bug.
   */
  getNewBlocks(n: number): KvBlock[] {
    if (n > this.freeQueue.length) {
      throw new AutoGlmError('internal_error', `KV block pool: asked for ${n} blocks, ${this.freeQueue.length} free`);
    }
    const out: KvBlock[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.freeQueue.popFront();
      this.evict(b);
      b.refCount = 1;
      out.push(b);
    }
    return out;
  }

  /** Takes a reference on blocks found in the cache, reviving free ones. */
  touch(blocks: readonly KvBlock[]): void {
    for (const b of blocks) {
      if (b.refCount === 0) this.freeQueue.remove(b);
      b.refCount++;
    }
  }

  /**
   * Drops one reference on each block. Blocks reaching zero go to the free list: hashed
   * ones to the back in the given order (pass a request's blocks tail first so its last
   * blocks, the least likely to be shared, are evicted first), unhashed ones to the front
   * since they hold nothing worth keeping.
   */
  freeBlocks(blocks: readonly KvBlock[]): void {
    for (const b of blocks) {
      if (b.refCount <= 0) throw new AutoGlmError('internal_error', `KV block ${b.blockId} freed twice`);
      b.refCount--;
      if (b.refCount > 0) continue;
      if (b.blockHash === null) this.freeQueue.prepend(b);
      else this.freeQueue.append(b);
    }
  }

  /**
   * Registers a full, computed block under its hash. Returns false (and leaves the block
   * unhashed) when prefix caching is off or another block already holds that prefix.
   */
  cacheBlock(b: KvBlock, hash: BlockHash): boolean {
    if (!this.enablePrefixCaching || b.blockHash !== null || this.cached.has(hash)) return false;
    b.blockHash = hash;
    this.cached.set(hash, b);
    return true;
  }

  /** Free block ids front (next evicted) to back. */
  freeBlockIds(): BlockId[] {
    return this.freeQueue.ids();
  }

  private evict(b: KvBlock): void {
    if (b.blockHash === null) return;
    this.cached.delete(b.blockHash);
    b.blockHash = null;
    this.evictions++;
  }
}
