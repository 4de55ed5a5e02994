import { describe, expect, test } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { ApiKeyChecker, parseKeyFile, secretsEqual } from '../../src/server/auth.js';
import { RateLimiter } from '../../src/server/rate-limiter.js';

describe('ApiKeyChecker', () => {
  const checker = new ApiKeyChecker(['sk-one', 'sk-two', '']);

  test('accepts each configured key and names it by index, never by value', () => {
    expect(checker.authenticate('Bearer sk-one')).toBe('key#0');
    expect(checker.authenticate('bearer   sk-two ')).toBe('key#1');
  });

  test.each([
    [undefined, 'Missing'],
    ['', 'Missing'],
    ['sk-one', 'Missing'],
    ['Basic sk-one', 'Missing'],
    ['Bearer sk-on', 'Incorrect'],
    ['Bearer sk-one2', 'Incorrect'],
    ['Bearer ', 'Missing'],
  ])('rejects %j with 401', (header, message) => {
    let caught: unknown;
    try {
      checker.authenticate(header);
    } catch (e) {
      caught = e;
    }
    expect(isAutoGlmError(caught, 'invalid_api_key')).toBe(true);
    expect((caught as Error).message).toContain(message);
    expect((caught as { status: number }).status).toBe(401);
  });

  test('an empty key in the list never matches an empty bearer', () => {
    expect(new ApiKeyChecker(['']).match('')).toBe(-1);
  });
});

test('secretsEqual compares whole values', () => {
  expect(secretsEqual('s3cret', 's3cret')).toBe(true);
  expect(secretsEqual('s3cret', 's3cre')).toBe(false);
  expect(secretsEqual('s3cret', undefined)).toBe(false);
});

test('parseKeyFile skips blanks and comments, trims CRLF', () => {
  expect(parseKeyFile('# keys\r\nsk-a\r\n\n  sk-b  \n#sk-c\n')).toEqual(['sk-a', 'sk-b']);
});

describe('RateLimiter', () => {
  test('allows a burst, then refills at the configured rate, per identity', () => {
    let now = 0;
    const limiter = new RateLimiter({ requestsPerSecond: 2, burst: 3 }, () => now);
    expect([1, 2, 3].map(() => limiter.take('a').allowed)).toEqual([true, true, true]);
    const refused = limiter.take('a');
    expect(refused).toEqual({ allowed: false, retryAfterSeconds: 1 });
    expect(limiter.take('b').allowed).toBe(true);
    now += 500; // one token back at 2/s
    expect(limiter.take('a').allowed).toBe(true);
    expect(limiter.take('a').allowed).toBe(false);
    now += 10_000; // refills to the burst, not beyond
    expect([1, 2, 3, 4].map(() => limiter.take('a').allowed)).toEqual([true, true, true, false]);
  });
});
