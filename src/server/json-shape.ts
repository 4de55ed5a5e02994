import { AutoGlmError } from '../errors.js';

/**
 * Deeper than any OpenAI request (tool schemas included), and far shallower than the
 * nesting at which JSON.stringify overflows the stack (about 10^4 levels).
 */
export const MAX_BODY_DEPTH = 256;

interface Node {
  value: object;
  depth: number;
  parent: Node | null;
  key: string;
}

/**
 * Two things JSON.parse accepts break a server that works with the value, so they are
 * refused with a 400 naming the parameter: nesting so deep that JSON.stringify (the gateway
 * serialising a body again for a worker, a worker sizing or rendering a chat template's
 * input) overflows the stack, a 500 otherwise; and a number past the double range (1e309
 * parses to Infinity and is written again as null, so `"temperature": 1e309`, which a
 * worker refuses, would reach it through the gateway as no temperature at all).
 * `param` names a value parsed from inside the body (a tool call's arguments); a body is
 * named by its top-level key. Iterative, so that the check itself cannot overflow.
 */
export function checkJsonShape(value: unknown, param?: string): void {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw outOfRange(param);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const stack: Node[] = [{ value, depth: 0, parent: null, key: '' }];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (node.depth >= MAX_BODY_DEPTH)
      throw new AutoGlmError('invalid_request', `${param ?? 'The request body'} is nested more than ${MAX_BODY_DEPTH} levels deep.`, {
        param: param ?? pathOf(node.parent!, node.key).split('.')[0]!,
      });
    const entries: Iterable<[unknown, unknown]> = Array.isArray(node.value) ? node.value.entries() : Object.entries(node.value);
    for (const [key, child] of entries) {
      if (typeof child === 'number') {
        if (!Number.isFinite(child)) throw outOfRange(param ?? pathOf(node, String(key)));
      } else if (typeof child === 'object' && child !== null) {
        stack.push({ value: child, depth: node.depth + 1, parent: node, key: String(key) });
      }
    }
  }
}

function outOfRange(param: string | undefined): AutoGlmError {
  return new AutoGlmError(
    'invalid_request',
    `Invalid parameter '${param ?? 'body'}': the number is out of range (JSON numbers must be finite doubles).`,
    param === undefined ? {} : { param },
  );
}

/** `messages.0.content`, the way the server names parameters: `key` under `parent`. */
function pathOf(parent: Node, key: string): string {
  const keys = [key];
  for (let n: Node | null = parent; n !== null && n.parent !== null; n = n.parent) keys.push(n.key);
  return keys.reverse().join('.');
}
