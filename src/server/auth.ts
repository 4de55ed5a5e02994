import { createHash, timingSafeEqual } from 'node:crypto';
import { AutoGlmError } from '../errors.js';

/**
 * Bearer keys compared in constant time. Keys are hashed first so every comparison is
 * between two 32-byte digests: timingSafeEqual needs equal lengths, and comparing digests
 * reveals neither a key's length nor its prefix.
 */
export class ApiKeyChecker {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[]) {
    this.digests = keys.filter((k) => k.length > 0).map(digest);
  }

  /** The matching key's index, or -1. Checks every key so timing does not depend on which one matched. */
  match(candidate: string): number {
    const d = digest(candidate);
    let found = -1;
    this.digests.forEach((k, i) => {
      if (timingSafeEqual(k, d) && found < 0) found = i;
    });
    return found;
  }

  /** Returns an identity for rate limiting (the key's index, never the key). Throws 401 otherwise. */
  authenticate(authorization: string | undefined): string {
    const m = /^Bearer\s+(.+)$/i.exec(authorization?.trim() ?? '');
    if (!m) throw new AutoGlmError('invalid_api_key', 'Missing API key: send Authorization: Bearer <key>.');
    const index = this.match(m[1]!.trim());
    if (index < 0) throw new AutoGlmError('invalid_api_key', 'Incorrect API key provided.');
    return `key#${index}`;
  }
}

export function secretsEqual(expected: string, candidate: string | undefined): boolean {
  return timingSafeEqual(digest(expected), digest(candidate ?? ''));
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Parses an API key file: one key per line; blank lines and `#` comments ignored. */
export function parseKeyFile(contents: string): string[] {
  return contents
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}
