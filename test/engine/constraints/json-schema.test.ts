/**
 * JSON Schema compiled to the automaton (src/engine/constraints/json-schema.ts): values the
 * automaton generates (random walks over its allowed bytes) always parse and validate
 * against the schema (test/reference/json-schema-validate.ts), with properties in the
 * schema's order; texts that break the schema are refused; and every keyword outside the
 * supported subset is a 400 naming it.
 */
import { describe, expect, it } from 'vitest';
import { GrammarAutomaton, type AutomatonState } from '../../../src/engine/constraints/automaton.js';
import { MAX_COUNTED_BOUND, compileJsonSchema } from '../../../src/engine/constraints/json-schema.js';
import { isAutoGlmError } from '../../../src/errors.js';
import { Rng } from '../../helpers/random.js';
import { validateJson } from '../../reference/json-schema-validate.js';

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });
const CLOSERS = [0x22, 0x5d, 0x7d];

/**
 * One random text the automaton accepts: bytes drawn uniformly from those allowed, with a
 * lean towards closing strings, arrays and objects so texts stay short; stops at a complete
 * value with probability 1/2 per step. Null if it ran past maxBytes.
 */
function randomText(automaton: GrammarAutomaton, rng: Rng, maxBytes = 3000): string | null {
  let state: AutomatonState = automaton.initial();
  const bytes: number[] = [];
  while (bytes.length < maxBytes) {
    if (automaton.isComplete(state) && rng.next() < 0.5) return dec.decode(Uint8Array.from(bytes));
    const allowed: number[] = [];
    for (let b = 0; b < 256; b++) if (automaton.advance(state, b).length > 0) allowed.push(b);
    if (allowed.length === 0) {
      expect(automaton.isComplete(state), 'a dead end before the value is complete').toBe(true);
      return dec.decode(Uint8Array.from(bytes));
    }
    const closers = allowed.filter((b) => CLOSERS.includes(b));
    const pick = closers.length > 0 && rng.next() < 0.3 ? closers : allowed;
    const b = pick[rng.int(pick.length)]!;
    bytes.push(b);
    state = automaton.advance(state, b);
  }
  return null;
}

function accepts(automaton: GrammarAutomaton, text: string): 'complete' | 'incomplete' | 'rejected' {
  const state = automaton.advanceBytes(automaton.initial(), enc.encode(text));
  if (state.length === 0) return 'rejected';
  return automaton.isComplete(state) ? 'complete' : 'incomplete';
}

/** Keys of every object in `value` are in the order the schema's properties list them. */
function inSchemaOrder(value: unknown, order: readonly string[]): boolean {
  if (Array.isArray(value)) return value.every((v) => inSchemaOrder(v, order));
  if (typeof value !== 'object' || value === null) return true;
  const keys = Object.keys(value).filter((k) => order.includes(k));
  const positions = keys.map((k) => order.indexOf(k));
  return positions.every((p, i) => i === 0 || p > positions[i - 1]!) && Object.values(value).every((v) => inSchemaOrder(v, order));
}

const person = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 10 },
    age: { type: 'integer' },
    email: { type: ['string', 'null'] },
    tags: { type: 'array', items: { enum: ['a', 'b', 1, null] }, minItems: 1, maxItems: 3 },
    ok: { type: 'boolean' },
  },
  required: ['name', 'age'],
  additionalProperties: false,
};

const tree = {
  $defs: {
    node: {
      type: 'object',
      properties: { value: { type: 'number' }, children: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 } },
      required: ['value'],
    },
  },
  $ref: '#/$defs/node',
};

const shapes = {
  title: 'Shape',
  anyOf: [
    { type: 'object', properties: { kind: { const: 'circle' }, r: { type: 'number' } }, required: ['kind', 'r'] },
    { type: 'object', properties: { kind: { const: 'square' }, side: { type: 'integer' } }, required: ['kind', 'side'] },
  ],
};

const SCHEMAS: [string, Record<string, unknown> | boolean, string[]][] = [
  ['a person (required, optional, lengths, enum, nullable, item counts)', person, Object.keys(person.properties)],
  ['a recursive tree through $defs', tree, ['value', 'children']],
  ['anyOf of two objects that begin alike', shapes, ['kind', 'r', 'side']],
  ['a bounded string', { type: 'string', minLength: 2, maxLength: 5 }, []],
  ['booleans, at least two', { type: 'array', items: { type: 'boolean' }, minItems: 2 }, []],
  ['a map of integers', { type: 'object', additionalProperties: { type: 'integer' } }, []],
  ['oneOf null or an enum', { oneOf: [{ type: 'null' }, { type: 'string', enum: ['x', 'y'] }] }, []],
  ['the empty object', { type: 'object', properties: {} }, []],
  ['a type list', { type: ['integer', 'boolean'] }, []],
  [
    'definitions and a described allOf of one $ref (pydantic v1)',
    {
      definitions: { a: { type: 'string', maxLength: 3 } },
      type: 'object',
      properties: { p: { allOf: [{ $ref: '#/definitions/a' }], description: 'x' } },
      required: ['p'],
    },
    ['p'],
  ],
  ['any value', true, []],
  ['any value, written {}', {}, []],
  ['a number or a const object', { anyOf: [{ type: 'number' }, { const: { a: [1, 'é'] } }] }, []],
];

describe('JSON Schema constraints', () => {
  it.each(SCHEMAS)('%s: generated values parse and validate, properties in schema order', (_name, schema, order) => {
    const automaton = new GrammarAutomaton(compileJsonSchema(schema));
    const rng = new Rng(12345);
    let generated = 0;
    for (let n = 0; n < 150; n++) {
      const text = randomText(automaton, rng);
      if (text === null) continue;
      generated++;
      const value: unknown = JSON.parse(text);
      expect(validateJson(value, schema), text).toEqual([]);
      expect(inSchemaOrder(value, order), text).toBe(true);
    }
    expect(generated).toBeGreaterThan(120);
  });

  it('generates each combination of optional properties, in order only, and nothing else', () => {
    const schema = {
      type: 'object',
      properties: { a: { type: 'integer' }, b: { type: 'integer' }, c: { type: 'integer' } },
      required: ['b'],
    };
    const automaton = new GrammarAutomaton(compileJsonSchema(schema));
    for (const text of ['{"b":1}', '{"a":1,"b":2}', '{"b":1,"c":2}', '{ "a" : 1 , "b" : 2 , "c" : 3 }'])
      expect(accepts(automaton, text), text).toBe('complete');
    for (const text of ['{"b":1,"a":2}', '{"a":1}', '{"c":1,"b":2}', '{"b":1,"d":2}', '{"b":1,"b":2}', '{}'])
      expect(accepts(automaton, text), text).toBe('rejected');
  });

  it.each([
    ['{"name":"Lily","age":3}', 'complete'],
    ['{"name":"Lily","age":3,"email":null,"tags":["a",1],"ok":true}', 'complete'],
    ['{"age":3,"name":"Lily"}', 'rejected'],
    ['{"name":"Lily"}', 'rejected'],
    ['{"name":"Lily","age":3.5}', 'rejected'],
    ['{"name":"","age":3}', 'rejected'],
    ['{"name":"abcdefghijk","age":3}', 'rejected'],
    ['{"name":"ab\\u00e9😀\\n def","age":3}', 'complete'],
    ['{"name":"L","age":3,"tags":[]}', 'rejected'],
    ['{"name":"L","age":3,"tags":[1,1,1,1]}', 'rejected'],
    ['{"name":"L","age":3,"tags":["c"]}', 'rejected'],
    ['{"name":"L","age":3,"extra":1}', 'rejected'],
    ['{"name":"L","age":-0', 'incomplete'],
  ])('person: %s is %s', (text, verdict) => {
    expect(accepts(new GrammarAutomaton(compileJsonSchema(person)), text)).toBe(verdict);
  });

  it('follows anyOf alternatives side by side until a byte tells them apart', () => {
    const automaton = new GrammarAutomaton(compileJsonSchema(shapes));
    const state = automaton.advanceBytes(automaton.initial(), enc.encode('{"kind": "'));
    expect(state.length).toBe(2);
    expect(accepts(automaton, '{"kind": "square", "side": 2}')).toBe('complete');
    expect(accepts(automaton, '{"kind": "square", "r": 2}')).toBe('rejected');
    expect(accepts(automaton, '{"kind": "circle", "r": 2.5}')).toBe('complete');
  });

  it.each([
    [{ type: 'string', pattern: '^a' }, /'pattern' .*at #\)/],
    [{ type: 'string', format: 'date-time' }, /'format'/],
    [{ type: 'integer', minimum: 0 }, /'minimum'/],
    [{ type: 'number', exclusiveMaximum: 1 }, /'exclusiveMaximum'/],
    [{ type: 'integer', multipleOf: 2 }, /'multipleOf'/],
    [{ type: 'object', properties: { a: { type: 'string', pattern: 'x' } } }, /'pattern' .*at #\/properties\/a\)/],
    [{ type: 'object', patternProperties: { x: {} } }, /'patternProperties'/],
    [{ type: 'object', propertyNames: { maxLength: 3 } }, /'propertyNames'/],
    [{ type: 'object', minProperties: 1 }, /'minProperties'/],
    [{ type: 'array', uniqueItems: true }, /'uniqueItems'/],
    [{ type: 'array', prefixItems: [{}] }, /'prefixItems'/],
    [{ type: 'array', contains: {} }, /'contains'/],
    [{ not: { type: 'null' } }, /'not'/],
    [{ if: {}, then: {} }, /'if'/],
    [{ nullable: true, type: 'string' }, /'nullable'/],
    [{ allOf: [{ type: 'object' }, { required: ['a'] }] }, /allOf of more than one/],
    [{ type: 'object', properties: { a: {} }, additionalProperties: true }, /additionalProperties beside properties/],
    [{ type: 'array', items: [{ type: 'string' }] }, /tuple validation/],
    [{ $ref: 'https://example.com/schema.json' }, /only local \$ref/],
    [{ $ref: '#/$defs/missing' }, /points at nothing/],
    [{ type: 'text' }, /unknown type "text"/],
    [{ enum: [] }, /non-empty list/],
    [{ type: 'string', enum: [1, 2] }, /none of the enum/],
    // what JSON.parse makes of 1e400 in a request body: JSON.stringify would write null
    [{ type: 'number', enum: [Infinity] }, /cannot represent/],
    [{ const: { a: [1, -Infinity] } }, /cannot represent/],
    [{ type: 'object', properties: { a: {} }, required: ['b'] }, /required names 'b'/],
    [{ type: 'string', minLength: 5, maxLength: 2 }, /minLength \(5\) is above maxLength \(2\)/],
    [{ type: 'string', maxLength: MAX_COUNTED_BOUND + 1 }, /maxLength above/],
    [{ type: 'array', minItems: -1 }, /non-negative integer/],
    [false, /admits no value/],
    [{ anyOf: [{ type: 'string' }], type: 'string' }, /'anyOf' combined with 'type'/],
    [{ type: 'object', properties: { self: { $ref: '#' } }, required: ['self'] }, /no finite JSON value/],
    [{ $defs: { a: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' }, /refers to itself/],
    [{ type: 'object', properties: Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`p${i}`, { type: 'string' }])) }, /too large/],
  ])('%j is refused with a 400 naming the problem', (schema, message) => {
    let err: unknown;
    try {
      compileJsonSchema(schema);
    } catch (e) {
      err = e;
    }
    expect(isAutoGlmError(err, 'invalid_request') && err.param === 'response_format', String(err)).toBe(true);
    expect((err as Error).message).toMatch(message);
  });

  it('accepts strict-mode-style schemas with annotations everywhere', () => {
    const schema = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      title: 'Answer',
      description: 'An answer',
      type: 'object',
      properties: {
        answer: { type: 'string', description: 'the answer', examples: ['yes'], default: 'no' },
        sure: { type: 'boolean', deprecated: false },
      },
      required: ['answer', 'sure'],
      additionalProperties: false,
    };
    expect(accepts(new GrammarAutomaton(compileJsonSchema(schema)), '{"answer": "yes", "sure": true}')).toBe('complete');
  });
});
