/**
 * The vocabulary as a byte trie, in flat arrays (about 0.4M nodes for a 150k vocabulary:
 * objects per node would cost far more memory and time). A mask walk descends it with the
 * automaton, so a prefix shared by thousands of tokens is checked once, and a byte the
 * grammar refuses cuts off every token below it.
 *
 * Nodes are numbered in depth-first order with children in byte order; node 0 is the root
 * (the empty prefix). Children of n: childByte/childNode[childStart[n] .. childStart[n + 1]);
 * tokens whose bytes end at n: tokenIds[tokenStart[n] .. tokenStart[n + 1]).
 */
import { bytesOfToken, type TokenBytes } from './token-bytes.js';

export interface TokenTrie {
  readonly nodeCount: number;
  readonly childStart: Int32Array;
  readonly childByte: Uint8Array;
  readonly childNode: Int32Array;
  readonly tokenStart: Int32Array;
  readonly tokenIds: Int32Array;
}

/** The trie of every token with bytes (of those `include` accepts, when given). */
export function buildTokenTrie(tokens: TokenBytes, include: (id: number) => boolean = () => true): TokenTrie {
  const ids: number[] = [];
  for (let id = 0; id < tokens.count; id++) if (tokens.offsets[id + 1]! > tokens.offsets[id]! && include(id)) ids.push(id);
  const bytesOf = ids.map((id) => bytesOfToken(tokens, id));
  const order = ids.map((_, i) => i).sort((a, b) => compareBytes(bytesOf[a]!, bytesOf[b]!) || ids[a]! - ids[b]!);

  // Sorted, each token shares its longest common prefix with the one before: new nodes
  // only past it, created in depth-first order.
  const parent: number[] = [-1];
  const byteOf: number[] = [0];
  const endsAt = new Int32Array(ids.length);
  const path: number[] = [0];
  let previous: Uint8Array = new Uint8Array(0);
  for (const i of order) {
    const bytes = bytesOf[i]!;
    let common = 0;
    while (common < bytes.length && common < previous.length && bytes[common] === previous[common]) common++;
    path.length = common + 1;
    for (let d = common; d < bytes.length; d++) {
      const node = parent.length;
      parent.push(path[d]!);
      byteOf.push(bytes[d]!);
      path.push(node);
    }
    endsAt[i] = path[bytes.length]!;
    previous = bytes;
  }

  const nodeCount = parent.length;
  const childStart = new Int32Array(nodeCount + 1);
  for (let n = 1; n < nodeCount; n++) childStart[parent[n]! + 1]!++;
  for (let n = 0; n < nodeCount; n++) childStart[n + 1]! += childStart[n]!;
  const childByte = new Uint8Array(nodeCount - 1);
  const childNode = new Int32Array(nodeCount - 1);
  const fill = childStart.slice(0, nodeCount);
  // depth-first creation order visits each parent's children in byte order
  for (let n = 1; n < nodeCount; n++) {
    const at = fill[parent[n]!]!++;
    childByte[at] = byteOf[n]!;
    childNode[at] = n;
  }

  const tokenStart = new Int32Array(nodeCount + 1);
  for (const node of endsAt) tokenStart[node + 1]!++;
  for (let n = 0; n < nodeCount; n++) tokenStart[n + 1]! += tokenStart[n]!;
  const tokenIds = new Int32Array(ids.length);
  const next = tokenStart.slice(0, nodeCount);
  for (const i of order) tokenIds[next[endsAt[i]!]!++] = ids[i]!;
  return { nodeCount, childStart, childByte, childNode, tokenStart, tokenIds };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}
