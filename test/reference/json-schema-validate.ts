/**
 * Reference for the JSON Schema compiler (src/engine/constraints/json-schema.ts): a plain
 * validator for the same subset with JSON Schema's own semantics (oneOf: exactly one;
 * additionalProperties absent beside properties: no other keys, as the compiler documents).
 * Returns the problems found, [] for a valid value.
 */
type Schema = Record<string, unknown> | boolean;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function typeOf(v: unknown): string[] {
  if (v === null) return ['null'];
  if (Array.isArray(v)) return ['array'];
  if (typeof v === 'number') return Number.isInteger(v) ? ['integer', 'number'] : ['number'];
  return [typeof v === 'object' ? 'object' : typeof v];
}

function equal(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (isObject(v))
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortKeys(v[k])]),
    );
  return v;
}

function resolve(root: Schema, ref: string): Schema {
  let at: unknown = root;
  for (const part of ref
    .slice(2)
    .split('/')
    .filter((p) => p !== ''))
    at = (at as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  return at as Schema;
}

export function validateJson(value: unknown, schema: Schema, root: Schema = schema, path = '$'): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${path}: false schema`];
  const s = schema;
  const problems: string[] = [];
  if (typeof s.$ref === 'string') return validateJson(value, resolve(root, s.$ref), root, path);
  if (Array.isArray(s.allOf)) for (const sub of s.allOf) problems.push(...validateJson(value, sub as Schema, root, path));
  if (Array.isArray(s.anyOf) && !s.anyOf.some((sub) => validateJson(value, sub as Schema, root, path).length === 0))
    problems.push(`${path}: matches no anyOf`);
  if (Array.isArray(s.oneOf)) {
    const n = s.oneOf.filter((sub) => validateJson(value, sub as Schema, root, path).length === 0).length;
    if (n !== 1) problems.push(`${path}: matches ${n} oneOf`);
  }
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? s.type : [s.type];
    if (!typeOf(value).some((t) => types.includes(t))) problems.push(`${path}: type ${typeOf(value)[0]} not in ${types.join('|')}`);
  }
  if (Array.isArray(s.enum) && !s.enum.some((e) => equal(e, value))) problems.push(`${path}: not in enum`);
  if ('const' in s && !equal(s.const, value)) problems.push(`${path}: not the const`);
  if (typeof value === 'string') {
    const length = [...value].length;
    if (typeof s.minLength === 'number' && length < s.minLength) problems.push(`${path}: shorter than ${s.minLength}`);
    if (typeof s.maxLength === 'number' && length > s.maxLength) problems.push(`${path}: longer than ${s.maxLength}`);
  }
  if (Array.isArray(value)) {
    if (typeof s.minItems === 'number' && value.length < s.minItems) problems.push(`${path}: fewer than ${s.minItems} items`);
    if (typeof s.maxItems === 'number' && value.length > s.maxItems) problems.push(`${path}: more than ${s.maxItems} items`);
    if (s.items !== undefined) value.forEach((v, i) => problems.push(...validateJson(v, s.items as Schema, root, `${path}[${i}]`)));
  }
  if (isObject(value)) {
    const props = isObject(s.properties) ? s.properties : undefined;
    for (const r of (s.required as string[] | undefined) ?? []) if (!(r in value)) problems.push(`${path}: missing ${r}`);
    for (const [k, v] of Object.entries(value)) {
      if (props && k in props) problems.push(...validateJson(v, props[k] as Schema, root, `${path}.${k}`));
      else if (s.additionalProperties === false || (props && s.additionalProperties === undefined))
        problems.push(`${path}: extra key ${k}`);
      else if (isObject(s.additionalProperties)) problems.push(...validateJson(v, s.additionalProperties, root, `${path}.${k}`));
    }
  }
  return problems;
}
