/**
 * Finished responses keyed by the SHA-256 of the canonical request, served again without
 * touching the GPU. Only deterministic requests are cached (greedy, or an explicit seed:
 * randomness is a function of (seed, position)), so a cached answer is the one the engine
 * would produce. Bounded by entry count and bytes (LRU eviction) and by age (TTL).
 */
import { createHash } from 'node:crypto';
import { AutoGlmError } from '../errors.js';
import type { SamplingParams } from './types.js';

/**
 * Everything that decides a response. Callers resolve defaults first (e.g. the
 * temperature from generation_config) so that equal requests give equal keys; any extra
 * field is part of the key too.
 */
export interface ResponseCacheKeyInput {
  model: string;
  promptTokenIds: readonly number[];
  maxTokens: number;
  sampling: SamplingParams;
  stop?: readonly string[];
  stopTokenIds?: readonly number[];
  ignoreEos?: boolean;
  logprobs?: boolean;
  topLogprobs?: number;
  resumeTokenIds?: readonly number[];
  [extra: string]: unknown;
}

export interface ResponseCacheOptions {
  /** 0 disables the cache. */
  maxEntries: number;
  /** Sum of entry sizes (see set). */
  maxBytes: number;
  /** Age after which an entry is gone; 0 or Infinity keeps entries until evicted. */
  ttlMs: number;
  /** Clock, for tests. */
  now?: () => number;
}

export interface ResponseCacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
  evictions: number;
  expirations: number;
}

interface Entry<V> {
  value: V;
  sizeBytes: number;
  expiresAtMs: number;
}

/** True when the request's output is a pure function of the request. */
export function isCacheable(request: Pick<ResponseCacheKeyInput, 'sampling'>): boolean {
  const { temperature, topK, seed } = request.sampling;
  return temperature === 0 || topK === 1 || (typeof seed === 'number' && Number.isInteger(seed));
}

/** JSON with object keys sorted at every level and undefined fields dropped. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new AutoGlmError('invalid_request', `cannot key a non-finite number (${value})`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const fields = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
    return `{${fields.join(',')}}`;
  }
  throw new AutoGlmError('invalid_request', `cannot key a value of type ${typeof value}`);
}

/** Hex SHA-256 of the canonical request. */
export function responseCacheKey(request: ResponseCacheKeyInput): string {
  return createHash('sha256').update(canonicalJson(request)).digest('hex');
}

export class ResponseCache<V> {
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  /** Map order is recency order: the first entry is the least recently used. */
  private readonly entries = new Map<string, Entry<V>>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;
  private expirations = 0;

  constructor(options: ResponseCacheOptions) {
    for (const key of ['maxEntries', 'maxBytes', 'ttlMs'] as const) {
      if (!(options[key] >= 0)) {
        throw new AutoGlmError('invalid_request', `response cache: ${key} must be >= 0 (got ${options[key]})`);
      }
    }
    this.maxEntries = options.maxEntries;
    this.maxBytes = options.maxBytes;
    this.ttlMs = options.ttlMs > 0 ? options.ttlMs : Infinity;
    this.now = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.maxEntries > 0 && this.maxBytes > 0;
  }

  key(request: ResponseCacheKeyInput): string {
    return responseCacheKey(request);
  }

  isCacheable(request: Pick<ResponseCacheKeyInput, 'sampling'>): boolean {
    return this.enabled && isCacheable(request);
  }

  /** The cached value (now the most recently used), or undefined; counts a hit or a miss. */
  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (entry !== undefined && entry.expiresAtMs <= this.now()) {
      this.remove(key, entry);
      this.expirations++;
    } else if (entry !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, entry);
      this.hits++;
      return entry.value;
    }
    this.misses++;
    return undefined;
  }

  /**
   * Stores a value, evicting least recently used entries to stay within bounds. The size
   * defaults to the UTF-8 length of the value's JSON. Returns false when the value alone
   * exceeds maxBytes (or the cache is disabled) and nothing was stored.
   */
  set(key: string, value: V, options: { sizeBytes?: number } = {}): boolean {
    const sizeBytes = options.sizeBytes ?? Buffer.byteLength(JSON.stringify(value) ?? '') + key.length;
    const old = this.entries.get(key);
    if (old !== undefined) this.remove(key, old);
    if (!this.enabled || sizeBytes > this.maxBytes) return false;
    if (this.entries.size >= this.maxEntries || this.bytes + sizeBytes > this.maxBytes) this.dropExpired();
    while (this.entries.size >= this.maxEntries || this.bytes + sizeBytes > this.maxBytes) {
      const [lruKey, lru] = this.entries.entries().next().value as [string, Entry<V>];
      this.remove(lruKey, lru);
      this.evictions++;
    }
    this.entries.set(key, { value, sizeBytes, expiresAtMs: this.now() + this.ttlMs });
    this.bytes += sizeBytes;
    return true;
  }

  delete(key: string): boolean {
    const entry = this.entries.get(key);
    if (entry === undefined) return false;
    this.remove(key, entry);
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  stats(): ResponseCacheStats {
    return {
      entries: this.entries.size,
      bytes: this.bytes,
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
      expirations: this.expirations,
    };
  }

  /** Expired entries are dropped before evicting live ones for room. */
  private dropExpired(): void {
    const now = this.now();
    for (const [key, entry] of this.entries) {
      if (entry.expiresAtMs <= now) {
        this.remove(key, entry);
        this.expirations++;
      }
    }
  }

  private remove(key: string, entry: Entry<V>): void {
    this.entries.delete(key);
    this.bytes -= entry.sizeBytes;
  }
}
