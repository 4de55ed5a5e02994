import type { FastifyInstance } from 'fastify';
import { AutoGlmError } from '../errors.js';

/**
 * The application/json body parser of the server and the gateway, in place of fastify's.
 *
 * fastify's parser (secure-json-parse) refuses a `__proto__` key, and a `constructor` key
 * holding a `prototype`, because code that merges the value into another object
 * (Object.assign, a naive deep merge) would rewrite that object's prototype. It refuses them
 * rightly, but with the same "Body is not valid JSON" as a missing brace, so a client
 * sending valid JSON could not tell what was wrong. Here they are refused as well, as a 400
 * naming the key and where it is; malformed JSON keeps `invalid_json`, now with JSON.parse's
 * own reason (where it stopped). A body that is not UTF-8 (JSON's only encoding on the wire)
 * is `invalid_json` too: decoded loosely, its bad bytes became U+FFFD and reached the model
 * as text the client never sent. Only application/json bodies are parsed at all.
 */
export function installJsonBodyParser(app: FastifyInstance): void {
  // fastify's text/plain parser handed the handlers a string, refused as "must be object"
  // (server) or "must be a JSON object" (gateway) when the content type was what was wrong.
  // Without it text/plain gets the same "Content-Type must be application/json" as any
  // other type; that also keeps a cross-site page's simple (unpreflighted) text/plain POST
  // from running a generation on a server started with --no-auth.
  app.removeContentTypeParser('text/plain');
  app.removeContentTypeParser('application/json');
  // the raw bytes, within the server's bodyLimit, decoded strictly here
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(decodeUtf8(body as Buffer)));
    } catch (e) {
      done(e as Error, undefined);
    }
  });
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(bytes: Buffer): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new AutoGlmError('invalid_json', 'The request body is not valid UTF-8; send JSON encoded as UTF-8.');
  }
}

export function parseJsonBody(text: string): unknown {
  if (text.length === 0) throw new AutoGlmError('invalid_json', 'The request body is empty; send a JSON object.');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new AutoGlmError('invalid_json', `The request body is not valid JSON: ${(e as Error).message}.`);
  }
  // The walk below is only needed when such a key can be there (written plainly or with \u escapes).
  if (/__proto__|prototype|\\u/.test(text)) refusePrototypeKeys(value);
  return value;
}

/** The keys secure-json-parse refuses, in the same cases; iterative, so deep nesting cannot overflow the stack. */
function refusePrototypeKeys(value: unknown): void {
  const stack: { value: unknown; path: string[] }[] = [{ value, path: [] }];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (typeof node.value !== 'object' || node.value === null) continue;
    const object = node.value as Record<string, unknown>;
    if (Object.hasOwn(object, '__proto__')) throw prototypeKey('__proto__', node.path);
    const ctor = Object.hasOwn(object, 'constructor') ? object['constructor'] : undefined;
    if (typeof ctor === 'object' && ctor !== null && Object.hasOwn(ctor, 'prototype'))
      throw prototypeKey('constructor.prototype', node.path);
    for (const [key, child] of Object.entries(object))
      if (typeof child === 'object' && child !== null) stack.push({ value: child, path: [...node.path, key] });
  }
}

function prototypeKey(key: string, path: string[]): AutoGlmError {
  const param = [...path, key].join('.');
  const where = path.length === 0 ? '' : ` (in '${path.join('.')}')`;
  return new AutoGlmError(
    'invalid_request',
    `The key '${key}' is not allowed in a request body${where}: it could rewrite an object's prototype. Rename or remove it.`,
    { param },
  );
}
