import { describe, expect, it } from 'vitest';
import {
  ResponseCache,
  canonicalJson,
  isCacheable,
  responseCacheKey,
  type ResponseCacheKeyInput,
} from '../../src/engine/response-cache.js';
import { isAutoGlmError } from '../../src/errors.js';

const base: ResponseCacheKeyInput = {
  model: 'demo-stories',
  promptTokenIds: [1, 2, 3],
  maxTokens: 16,
  sampling: { temperature: 0 },
  stop: ['\n'],
};

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('response cache keys', () => {
  it('are the SHA-256 of canonical JSON: key order and undefined fields do not matter', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: undefined }, 'x'], e: null })).toBe('{"a":[{"d":2},"x"],"b":1,"e":null}');
    const reordered: ResponseCacheKeyInput = {
      stop: ['\n'],
      sampling: { temperature: 0, seed: undefined },
      maxTokens: 16,
      promptTokenIds: [1, 2, 3],
      model: 'demo-stories',
    };
    expect(responseCacheKey(reordered)).toBe(responseCacheKey(base));
    expect(responseCacheKey(base)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('change with every input that changes the response', () => {
    const variants: ResponseCacheKeyInput[] = [
      { ...base, model: 'other' },
      { ...base, promptTokenIds: [1, 2, 4] },
      { ...base, promptTokenIds: [3, 2, 1] },
      { ...base, maxTokens: 17 },
      { ...base, sampling: { temperature: 0, repetitionPenalty: 1.1 } },
      { ...base, sampling: { temperature: 0.5, seed: 1 } },
      { ...base, sampling: { temperature: 0.5, seed: 2 } },
      { ...base, stop: ['\n\n'] },
      { ...base, stopTokenIds: [2] },
      { ...base, ignoreEos: true },
      { ...base, logprobs: true },
      { ...base, logprobs: true, topLogprobs: 5 },
      { ...base, resumeTokenIds: [9] },
    ];
    const keys = new Set([base, ...variants].map(responseCacheKey));
    expect(keys.size).toBe(variants.length + 1);
  });

  it('refuse non-finite numbers with a typed error', () => {
    let err: unknown;
    try {
      responseCacheKey({ ...base, sampling: { temperature: NaN } });
    } catch (e) {
      err = e;
    }
    expect(isAutoGlmError(err, 'invalid_request')).toBe(true);
  });
});

describe('isCacheable', () => {
  it('accepts only deterministic requests: greedy or an explicit integer seed', () => {
    expect(isCacheable({ sampling: { temperature: 0 } })).toBe(true);
    expect(isCacheable({ sampling: { temperature: 1, topK: 1 } })).toBe(true);
    expect(isCacheable({ sampling: { temperature: 0.8, seed: 42 } })).toBe(true);
    expect(isCacheable({ sampling: { temperature: 0.8 } })).toBe(false);
    expect(isCacheable({ sampling: {} })).toBe(false); // default temperature is the model's, not greedy
    expect(isCacheable({ sampling: { temperature: 0.8, seed: 1.5 } })).toBe(false);
    expect(new ResponseCache({ maxEntries: 0, maxBytes: 100, ttlMs: 0 }).isCacheable(base)).toBe(false);
  });
});

describe('ResponseCache', () => {
  it('counts hits and misses and returns what was stored', () => {
    const cache = new ResponseCache<{ text: string }>({ maxEntries: 4, maxBytes: 10_000, ttlMs: 60_000 });
    const key = cache.key(base);
    expect(cache.get(key)).toBeUndefined();
    expect(cache.set(key, { text: 'once upon a time' })).toBe(true);
    expect(cache.get(key)).toEqual({ text: 'once upon a time' });
    expect(cache.get(key)).toEqual({ text: 'once upon a time' });
    expect(cache.stats()).toMatchObject({ hits: 2, misses: 1, entries: 1 });
  });

  it('evicts the least recently used entry when full', () => {
    const cache = new ResponseCache<string>({ maxEntries: 2, maxBytes: 10_000, ttlMs: 0 });
    cache.set('a', 'A');
    cache.set('b', 'B');
    cache.get('a'); // a is now the most recent
    cache.set('c', 'C');
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBe('A');
    expect(cache.get('c')).toBe('C');
    expect(cache.stats()).toMatchObject({ entries: 2, evictions: 1 });
  });

  it('keeps the byte total within maxBytes and refuses a value larger than the whole budget', () => {
    const cache = new ResponseCache<string>({ maxEntries: 100, maxBytes: 100, ttlMs: 0 });
    cache.set('a', 'x', { sizeBytes: 40 });
    cache.set('b', 'y', { sizeBytes: 40 });
    cache.set('c', 'z', { sizeBytes: 40 }); // evicts a
    expect(cache.stats()).toMatchObject({ bytes: 80, entries: 2, evictions: 1 });
    expect(cache.get('a')).toBeUndefined();
    cache.set('b', 'y2', { sizeBytes: 10 }); // replacing re-accounts
    expect(cache.stats().bytes).toBe(50);
    expect(cache.set('huge', 'h', { sizeBytes: 101 })).toBe(false);
    expect(cache.stats()).toMatchObject({ bytes: 50, entries: 2 });
    expect(cache.delete('c')).toBe(true);
    expect(cache.stats().bytes).toBe(10);
    // default size: UTF-8 bytes of the JSON plus the key
    const sized = new ResponseCache<string>({ maxEntries: 10, maxBytes: 1000, ttlMs: 0 });
    sized.set('k', 'héllo');
    expect(sized.stats().bytes).toBe(Buffer.byteLength('"héllo"') + 1);
  });

  it('expires entries after ttlMs and drops expired ones before evicting live ones', () => {
    const c = clock();
    const cache = new ResponseCache<string>({ maxEntries: 2, maxBytes: 1000, ttlMs: 500, now: c.now });
    cache.set('a', 'A');
    c.advance(300);
    cache.set('b', 'B');
    c.advance(250); // a is 550 ms old, b 250 ms
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('b')).toBe('B');
    c.advance(300); // b expired too, still stored
    cache.set('c', 'C');
    cache.set('d', 'D'); // room made by dropping expired b, no live eviction
    expect(cache.stats()).toMatchObject({ entries: 2, expirations: 2, evictions: 0, misses: 1, hits: 1 });
    expect(cache.get('c')).toBe('C');
  });

  it('stores nothing when disabled and validates its bounds', () => {
    const off = new ResponseCache<string>({ maxEntries: 0, maxBytes: 1000, ttlMs: 0 });
    expect(off.set('a', 'A')).toBe(false);
    expect(off.get('a')).toBeUndefined();
    expect(() => new ResponseCache({ maxEntries: -1, maxBytes: 1, ttlMs: 0 })).toThrow(/maxEntries/);
  });
});
