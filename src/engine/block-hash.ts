/**
 * Chained hashes of full KV blocks, the keys of the prefix cache.
 *
 * A block's KV depends on every token before it, not only on its own tokens, so a block's
 * hash covers its parent's hash plus its own token ids (plus optional extra keys such as
 * the model name). Two requests get the same hash for block i exactly when their first
 * (i + 1) * blockSize tokens are equal. SHA-256 rather than a fast 32/64-bit hash: a
 * collision would silently serve another prompt's KV, and hashing costs about a
 * microsecond per 16-token block, nothing next to a forward step.
 *
 * The root seed is a constant (not random per process) so that every worker computes the
 * same hashes for the same prefix, which the gateway's prefix affinity can rely on.
 */
import { createHash } from 'node:crypto';

/** Hex SHA-256 of (parent hash, block token ids, extra keys). */
export type BlockHash = string & { readonly __brand: 'BlockHash' };

const ROOT_PARENT = 'open-autoglm/kv-block/v1';

/** Extra inputs that change what a block's KV means (model, adapter, ...). */
export type BlockHashExtraKeys = readonly (string | number)[];

/**
 * The hash of one full block: tokenIds must hold exactly one block's tokens.
 * `parent` is the hash of the previous block, or null for the first block.
 */
export function hashBlockTokens(parent: BlockHash | null, tokenIds: ArrayLike<number>, extraKeys: BlockHashExtraKeys = []): BlockHash {
  const h = createHash('sha256');
  h.update(parent ?? ROOT_PARENT);
  // Token ids as little-endian u32 bytes: unambiguous, no separator needed.
  const bytes = new Uint32Array(tokenIds.length);
  for (let i = 0; i < tokenIds.length; i++) bytes[i] = tokenIds[i]!;
  h.update(new Uint8Array(bytes.buffer));
  if (extraKeys.length > 0) h.update(JSON.stringify(extraKeys));
  return h.digest('hex') as BlockHash;
}

export interface BlockHashOptions {
  blockSize: number;
  extraKeys?: BlockHashExtraKeys;
}

/**
 * Extends `hashes` (the chained hashes of the first hashes.length full blocks of
 * tokenIds) with the hashes of every further full block of tokenIds. Appends in place and
 * returns the same array, so a request can keep one list and extend it as tokens arrive.
 */
export function extendBlockHashes(hashes: BlockHash[], tokenIds: readonly number[], options: BlockHashOptions): BlockHash[] {
  const { blockSize, extraKeys = [] } = options;
  const numFullBlocks = Math.floor(tokenIds.length / blockSize);
  for (let i = hashes.length; i < numFullBlocks; i++) {
    const parent = i === 0 ? null : hashes[i - 1]!;
    hashes.push(hashBlockTokens(parent, tokenIds.slice(i * blockSize, (i + 1) * blockSize), extraKeys));
  }
  return hashes;
}

/** The chained hashes of every full block of tokenIds. */
export function hashRequestBlocks(tokenIds: readonly number[], options: BlockHashOptions): BlockHash[] {
  return extendBlockHashes([], tokenIds, options);
}
