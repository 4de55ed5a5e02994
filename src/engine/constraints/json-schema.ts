/**
 * A practical subset of JSON Schema compiled to a byte grammar, so that every text the
 * automaton accepts is a JSON value valid under the schema.
 *
 * Supported: type (object, array, string, number, integer, boolean, null, or a list of
 * them), properties + required (generated in the schema's order; optional ones may be
 * left out), additionalProperties (false, or absent, which also means no other properties;
 * an object schema with no `properties` takes any keys, with values of its
 * additionalProperties schema if one is given), items, minItems/maxItems,
 * minLength/maxLength, enum, const, anyOf and oneOf (as anyOf: exclusivity is not
 * enforced), allOf of one schema, $ref to a local pointer (#, #/$defs/..., #/definitions/...),
 * and annotations (title, description, default, examples, ...), which are ignored.
 *
 * Anything else (pattern, format, minimum, ...) is refused with an error naming the keyword
 * and where it is, rather than generating values that silently ignore it.
 */
import { GrammarError, type Grammar, type NodeId } from './grammar.js';
import { JsonRules, type PropertyRule } from './json-rules.js';
import { Slicer, runToEnd } from './slices.js';

/** Keywords that only describe: accepted and ignored. */
const ANNOTATIONS = new Set([
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  'deprecated',
  'readOnly',
  'writeOnly',
  '$defs',
  'definitions',
]);

const STRUCTURAL = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'minItems',
  'maxItems',
  'minLength',
  'maxLength',
  'enum',
  'const',
  'anyOf',
  'oneOf',
  'allOf',
  '$ref',
]);

/** What a string written raw (schemaPropertyRulesSteps) may say of itself, beside annotations. */
const RAW_STRING_KEYWORDS = new Set(['type', 'enum', 'const', 'minLength', 'maxLength']);

/** Item and character counts are unrolled into grammar nodes: bounds past this are refused. */
export const MAX_COUNTED_BOUND = 1024;

const TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'] as const;
type JsonType = (typeof TYPES)[number];

export const SUPPORTED_SCHEMA_KEYWORDS = [...STRUCTURAL].join(', ');

type Schema = Record<string, unknown>;

/** Where a schema came from, for errors: `response_format`, or a tool's `tools.N.function.parameters`. */
const RESPONSE_FORMAT = 'response_format';

function isRecord(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The grammar of one JSON value valid under `schema` (an object or a boolean). */
export function compileJsonSchema(schema: unknown): Grammar {
  return runToEnd(compileJsonSchemaSteps(schema));
}

/**
 * compileJsonSchema in slices (slices.ts): a schema near the grammar's node limit took
 * 0.2-0.4 s of one core, which inline held every other request's stream and the server's
 * health probes.
 */
export function* compileJsonSchemaSteps(schema: unknown): Generator<void, Grammar> {
  const rules = new JsonRules();
  const rule = yield* schemaRuleSteps(rules, schema, RESPONSE_FORMAT);
  return yield* rules.documentSteps(rule);
}

/**
 * The rule of one value valid under `schema`, among other rules of the same builder (a tool
 * call's arguments inside the call's envelope), in slices (slices.ts). Refusals name
 * `param`, where the schema was sent.
 */
export function schemaRuleSteps(rules: JsonRules, schema: unknown, param: string): Generator<void, NodeId> {
  return new SchemaCompiler(schema, rules, param).compile(schema, '#');
}

/**
 * The properties an object schema declares (a tool's parameters), in its order, each with
 * the rule of its value, for a call syntax that writes arguments one by one between tags
 * rather than as a JSON object (glm45): checked as an object schema's properties are, $refs
 * resolved against `schema`. Such a syntax writes strings without quotes, so a property
 * typed `string` is raw text (JsonRules.rawText); every other value is JSON. None when the
 * schema declares no properties.
 */
export function schemaPropertyRulesSteps(rules: JsonRules, schema: unknown, param: string): Generator<void, PropertyRule[]> {
  return new SchemaCompiler(schema, rules, param).propertyRules(schema);
}

/** Compiles a schema's parts into rules; each method a generator that may pause between schemas (compile). */
class SchemaCompiler {
  private readonly compiled = new Map<Schema, NodeId>();
  private readonly slicer = new Slicer();

  constructor(
    private readonly root: unknown,
    private readonly rules: JsonRules,
    private readonly param: string,
  ) {}

  private refuse(path: string, message: string): GrammarError {
    return new GrammarError(`${this.param}: ${message} (at ${path})`, this.param);
  }

  *compile(schema: unknown, path: string): Generator<void, NodeId> {
    if (this.slicer.due()) yield;
    if (schema === true) return this.rules.anyValue();
    if (schema === false) throw this.refuse(path, 'the schema `false` admits no value');
    if (!isRecord(schema)) throw this.refuse(path, 'a schema must be an object or a boolean');
    const known = this.compiled.get(schema);
    if (known !== undefined) return known;
    // registered before its parts, so a $ref back to it (recursion) finds it
    const start = this.rules.g.node();
    this.compiled.set(schema, start);
    this.checkKeywords(schema, path);
    for (const alt of yield* this.alternatives(schema, path)) this.rules.g.epsilon(start, alt);
    return start;
  }

  private checkKeywords(schema: Schema, path: string): void {
    for (const key of Object.keys(schema)) {
      if (STRUCTURAL.has(key) || ANNOTATIONS.has(key)) continue;
      throw this.refuse(
        path,
        `the JSON Schema keyword '${key.slice(0, 60)}' is not supported by constrained decoding here; supported: ${SUPPORTED_SCHEMA_KEYWORDS}`,
      );
    }
  }

  /** The rules a value may follow: one each for a union's members, a type list's types. */
  private *alternatives(schema: Schema, path: string): Generator<void, NodeId[]> {
    const combinators = ['$ref', 'anyOf', 'oneOf', 'allOf'].filter((k) => k in schema);
    if (combinators.length > 0) {
      const structural = Object.keys(schema).filter((k) => STRUCTURAL.has(k) && k !== combinators[0]);
      if (structural.length > 0)
        throw this.refuse(
          path,
          `'${combinators[0]}' combined with '${structural[0]}' is not supported (only annotations may sit beside it)`,
        );
      return yield* this.combinator(combinators[0]!, schema[combinators[0]!], path);
    }
    if ('enum' in schema || 'const' in schema) return [this.literals(schema, path)];
    const rules: NodeId[] = [];
    for (const t of this.typesOf(schema, path)) rules.push(yield* this.typed(t, schema, path));
    return rules;
  }

  private *combinator(keyword: string, value: unknown, path: string): Generator<void, NodeId[]> {
    const at = `${path}/${keyword}`;
    if (keyword === '$ref') return [yield* this.compile(this.resolve(value, at), at)];
    if (!Array.isArray(value) || value.length === 0) throw this.refuse(at, `${keyword} must be a non-empty list of schemas`);
    if (keyword === 'allOf') {
      // pydantic v1 writes a described $ref as allOf of one: the same schema
      if (value.length !== 1) throw this.refuse(at, 'allOf of more than one schema is not supported');
      return [yield* this.compile(value[0], `${at}/0`)];
    }
    const rules: NodeId[] = [];
    for (let i = 0; i < value.length; i++) rules.push(yield* this.compile(value[i], `${at}/${i}`));
    return rules;
  }

  /** A local reference: '#' or a JSON pointer into the root schema. */
  private resolve(ref: unknown, path: string): unknown {
    if (typeof ref !== 'string' || !ref.startsWith('#'))
      throw this.refuse(path, `only local $ref values ('#', '#/$defs/Name', ...) are supported, got ${JSON.stringify(ref)?.slice(0, 80)}`);
    let target: unknown = this.root;
    const pointer = decodeURIComponent(ref.slice(1));
    if (pointer === '') return target;
    if (!pointer.startsWith('/')) throw this.refuse(path, `$ref ${JSON.stringify(ref.slice(0, 80))} is not a JSON pointer`);
    for (const raw of pointer.slice(1).split('/')) {
      const token = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      const next: unknown = isRecord(target) || Array.isArray(target) ? (target as Record<string, unknown>)[token] : undefined;
      if (next === undefined) throw this.refuse(path, `$ref ${JSON.stringify(ref.slice(0, 80))} points at nothing`);
      target = next;
    }
    return target;
  }

  private typesOf(schema: Schema, path: string): JsonType[] {
    const t = schema.type;
    if (t === undefined) {
      // what the other keywords imply, as generators do; none: any value
      if (['properties', 'required', 'additionalProperties'].some((k) => k in schema)) return ['object'];
      if (['items', 'minItems', 'maxItems'].some((k) => k in schema)) return ['array'];
      if (['minLength', 'maxLength'].some((k) => k in schema)) return ['string'];
      return [...TYPES];
    }
    const list = Array.isArray(t) ? t : [t];
    if (list.length === 0) throw this.refuse(`${path}/type`, 'type must name at least one type');
    for (const name of list) {
      if (!TYPES.includes(name as JsonType))
        throw this.refuse(`${path}/type`, `unknown type ${JSON.stringify(name)?.slice(0, 40)} (one of ${TYPES.join(', ')})`);
    }
    return [...new Set(list as JsonType[])];
  }

  private *typed(type: JsonType, schema: Schema, path: string): Generator<void, NodeId> {
    const r = this.rules;
    switch (type) {
      case 'string':
        return r.string({ minLength: this.count(schema, 'minLength', path), maxLength: this.count(schema, 'maxLength', path) });
      case 'number':
        return r.number();
      case 'integer':
        return r.integer();
      case 'boolean':
        return r.literals(['true', 'false']);
      case 'null':
        return r.literals(['null']);
      case 'array':
        return yield* this.array(schema, path);
      case 'object':
        return yield* this.object(schema, path);
    }
  }

  private *array(schema: Schema, path: string): Generator<void, NodeId> {
    if (Array.isArray(schema.items)) throw this.refuse(`${path}/items`, 'items as a list (tuple validation) is not supported');
    const item = schema.items === undefined ? this.rules.anyValue() : yield* this.compile(schema.items, `${path}/items`);
    const min = this.count(schema, 'minItems', path) ?? 0;
    const max = this.count(schema, 'maxItems', path) ?? Infinity;
    return this.rules.array(item, min, max);
  }

  private *object(schema: Schema, path: string): Generator<void, NodeId> {
    const declared = this.declaredProperties(schema, path);
    if (declared === null) {
      // no declared properties: any keys (json_object's objects), values as additionalProperties says
      const extra = schema.additionalProperties;
      if (extra === false) return this.rules.literals(['{}']);
      const value =
        extra === undefined || extra === true ? this.rules.anyValue() : yield* this.compile(extra, `${path}/additionalProperties`);
      return this.rules.object(value);
    }
    const properties: PropertyRule[] = [];
    for (const [name, property] of Object.entries(declared.properties)) {
      const value = yield* this.compile(property, `${path}/properties/${escapePointer(name)}`);
      properties.push({ name, value, required: declared.required.includes(name) });
    }
    return yield* this.rules.objectOfSteps(properties, this.slicer);
  }

  /** See schemaPropertyRulesSteps. */
  *propertyRules(schema: unknown): Generator<void, PropertyRule[]> {
    if (!isRecord(schema)) return [];
    this.checkKeywords(schema, '#');
    const declared = this.declaredProperties(schema, '#');
    if (declared === null) return [];
    const rules: PropertyRule[] = [];
    for (const [name, property] of Object.entries(declared.properties)) {
      const path = `#/properties/${escapePointer(name)}`;
      const value = isRecord(property) && property.type === 'string' ? this.rawString(property, path) : yield* this.compile(property, path);
      rules.push({ name, value, required: declared.required.includes(name) });
    }
    return rules;
  }

  /** An object schema's properties and the required ones among them, checked; null when it declares none. */
  private declaredProperties(schema: Schema, path: string): { properties: Schema; required: string[] } | null {
    const props = schema.properties;
    if (props !== undefined && !isRecord(props)) throw this.refuse(`${path}/properties`, 'properties must be an object of schemas');
    const required = schema.required ?? [];
    if (!Array.isArray(required) || required.some((r) => typeof r !== 'string'))
      throw this.refuse(`${path}/required`, 'required must be a list of property names');
    const undeclared = (required as string[]).find((r) => props === undefined || !Object.hasOwn(props, r));
    if (undeclared !== undefined)
      throw this.refuse(`${path}/required`, `required names '${undeclared.slice(0, 60)}', which properties does not declare`);
    if (props === undefined) return null;
    const extra = schema.additionalProperties;
    if (extra !== undefined && extra !== false)
      throw this.refuse(
        `${path}/additionalProperties`,
        'additionalProperties beside properties may only be false (or absent, which means the same here)',
      );
    return { properties: props, required: required as string[] };
  }

  /**
   * A string written raw, not as JSON (see schemaPropertyRulesSteps): enum and const as
   * their text, minLength and maxLength counted; other constraints on it are refused.
   */
  private rawString(schema: Schema, path: string): NodeId {
    this.checkKeywords(schema, path);
    const other = Object.keys(schema).find((k) => STRUCTURAL.has(k) && !RAW_STRING_KEYWORDS.has(k));
    if (other !== undefined) throw this.refuse(path, `'${other}' is not supported on a string argument written as raw text`);
    if (!('enum' in schema || 'const' in schema))
      return this.rules.rawText({ minLength: this.count(schema, 'minLength', path), maxLength: this.count(schema, 'maxLength', path) });
    if ('enum' in schema && 'const' in schema) throw this.refuse(path, "'enum' combined with 'const' is not supported");
    const values: unknown[] = 'const' in schema ? [schema.const] : (schema.enum as unknown[]);
    if (!Array.isArray(values) || values.length === 0) throw this.refuse(`${path}/enum`, 'enum must be a non-empty list');
    const texts = values.filter((v): v is string => typeof v === 'string');
    if (texts.length === 0) throw this.refuse(path, 'none of the enum/const values has the schema’s type');
    // the closing tag begins with '<', as raw text it could end the value early
    if (texts.some((t) => t.includes('<'))) throw this.refuse(path, "an enum/const value written as raw text may not hold '<'");
    return this.rules.literals([...new Set(texts)]);
  }

  /** enum / const: exactly these values, written as compact JSON (filtered by type when one is given). */
  private literals(schema: Schema, path: string): NodeId {
    if ('enum' in schema && 'const' in schema) throw this.refuse(path, "'enum' combined with 'const' is not supported");
    const values: unknown[] = 'const' in schema ? [schema.const] : (schema.enum as unknown[]);
    if (!Array.isArray(values) || values.length === 0) throw this.refuse(`${path}/enum`, 'enum must be a non-empty list');
    const types = schema.type === undefined ? null : this.typesOf(schema, path);
    const kept = values.filter((v) => types === null || types.some((t) => hasType(v, t)));
    if (kept.length === 0) throw this.refuse(path, 'none of the enum/const values has the schema’s type');
    // 1e400 parses to Infinity, which JSON cannot write (JSON.stringify gives null)
    if (kept.some(holdsNonFinite))
      throw this.refuse(path, 'an enum/const value holds a number JSON cannot represent (it overflows to infinity)');
    return this.rules.literals([...new Set(kept.map((v) => JSON.stringify(v)))]);
  }

  /** A count keyword: a non-negative integer up to MAX_COUNTED_BOUND, checked against its partner. */
  private count(schema: Schema, key: 'minLength' | 'maxLength' | 'minItems' | 'maxItems', path: string): number | undefined {
    const v = schema[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw this.refuse(`${path}/${key}`, `${key} must be a non-negative integer`);
    if (v > MAX_COUNTED_BOUND) throw this.refuse(`${path}/${key}`, `${key} above ${MAX_COUNTED_BOUND} is not supported`);
    const minKey = key.replace(/^max/, 'min');
    const maxKey = key.replace(/^min/, 'max');
    const [min, max] = [schema[minKey], schema[maxKey]];
    if (typeof min === 'number' && typeof max === 'number' && min > max)
      throw this.refuse(path, `${minKey} (${min}) is above ${maxKey} (${max})`);
    return v;
  }
}

function hasType(v: unknown, t: JsonType): boolean {
  switch (t) {
    case 'null':
      return v === null;
    case 'boolean':
      return typeof v === 'boolean';
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'array':
      return Array.isArray(v);
    case 'object':
      return isRecord(v);
  }
}

function escapePointer(name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Whether a JSON value holds a number that is not finite (a literal such as 1e400 overflowed). */
function holdsNonFinite(value: unknown): boolean {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (Array.isArray(value)) return value.some(holdsNonFinite);
  if (value !== null && typeof value === 'object') return Object.values(value).some(holdsNonFinite);
  return false;
}
