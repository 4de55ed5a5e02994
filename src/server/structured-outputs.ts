/**
 * vLLM's structured-output request fields, beside OpenAI's response_format: the older
 * `guided_choice` / `guided_regex` / `guided_json` and the newer `structured_outputs`
 * object ({choice | regex | json | json_object}, exactly one). Each becomes the engine's
 * ResponseFormat with `param` set to the field it came from, so that a pattern or schema the
 * engine cannot enforce is refused naming that field. A request may use one of them:
 * two constraints at once would ask for two different texts.
 */
import { AutoGlmError } from '../errors.js';
import type { ResponseFormat } from '../engine/types.js';

/** The fields, as the route schema lets them through (schemas.ts). */
export interface StructuredOutputFields {
  guided_choice?: string[] | null;
  guided_regex?: string | null;
  guided_json?: Record<string, unknown> | boolean | string | null;
  guided_grammar?: unknown;
  guided_whitespace_pattern?: unknown;
  structured_outputs?: Record<string, unknown> | null;
}

/** vLLM's fields that would change the output and that this server cannot enforce: refused, not ignored. */
const UNSUPPORTED_FIELDS = ['guided_grammar', 'guided_whitespace_pattern'] as const;
/** structured_outputs keys that choose the constraint. */
const CONSTRAINT_KEYS = ['json', 'regex', 'choice', 'json_object'] as const;
/** structured_outputs keys that change nothing here (there is no other backend to fall back to). */
const IGNORED_KEYS = new Set(['disable_fallback']);

/**
 * The request's one output constraint: `responseFormat` (from response_format, undefined
 * for none or text) or one of vLLM's fields; a 400 naming the second when there are two.
 */
export function structuredFormatOf(body: StructuredOutputFields, responseFormat: ResponseFormat | undefined): ResponseFormat | undefined {
  for (const field of UNSUPPORTED_FIELDS)
    if (body[field] !== undefined && body[field] !== null)
      throw invalid(field, `${field} is not supported by this server; use guided_regex, guided_choice or guided_json`);
  const given: { param: string; format: () => ResponseFormat }[] = [];
  if (responseFormat) given.push({ param: 'response_format', format: () => responseFormat });
  const { guided_choice: choice, guided_regex: regex, guided_json: json, structured_outputs: outputs } = body;
  if (choice != null) given.push({ param: 'guided_choice', format: () => ({ type: 'choice', choices: choice, param: 'guided_choice' }) });
  if (regex != null) given.push({ param: 'guided_regex', format: () => ({ type: 'regex', pattern: regex, param: 'guided_regex' }) });
  if (json != null) given.push({ param: 'guided_json', format: () => jsonSchemaFormat(json, 'guided_json') });
  if (outputs != null) given.push({ param: 'structured_outputs', format: () => structuredOutputsFormat(outputs) });
  if (given.length > 1) {
    const [first, second] = given as [(typeof given)[0], (typeof given)[0]];
    throw invalid(
      second.param,
      `${second.param} cannot be combined with ${first.param}: a request takes one output constraint (response_format, guided_choice, guided_regex, guided_json or structured_outputs)`,
    );
  }
  return given[0]?.format();
}

/** The parameter a format's errors name (response_format unless it came from one of vLLM's fields). */
export function formatParamOf(format: ResponseFormat): string {
  return ('param' in format && typeof format.param === 'string' && format.param) || 'response_format';
}

function structuredOutputsFormat(outputs: Record<string, unknown>): ResponseFormat {
  const keys = Object.keys(outputs).filter((k) => outputs[k] !== null && outputs[k] !== undefined && outputs[k] !== false);
  for (const k of keys)
    if (!(CONSTRAINT_KEYS as readonly string[]).includes(k) && !IGNORED_KEYS.has(k))
      throw invalid(
        `structured_outputs.${k}`,
        `structured_outputs.${k} is not supported by this server; use choice, regex, json or json_object`,
      );
  const chosen = keys.filter((k) => (CONSTRAINT_KEYS as readonly string[]).includes(k));
  if (chosen.length !== 1)
    throw invalid(
      chosen.length === 0 ? 'structured_outputs' : `structured_outputs.${chosen[1]}`,
      `structured_outputs takes exactly one of choice, regex, json or json_object, got ${chosen.length === 0 ? 'none' : chosen.join(' and ')}`,
    );
  const key = chosen[0]!;
  const param = `structured_outputs.${key}`;
  const value = outputs[key];
  switch (key) {
    case 'choice':
      return { type: 'choice', choices: value as string[], param };
    case 'regex':
      return { type: 'regex', pattern: value as string, param };
    case 'json_object':
      return { type: 'json_object', param };
    default:
      return jsonSchemaFormat(value as Record<string, unknown> | boolean | string, param);
  }
}

/** A JSON Schema given as an object (or boolean), or as JSON text holding one (vLLM takes both). */
function jsonSchemaFormat(schema: Record<string, unknown> | boolean | string, param: string): ResponseFormat {
  let value: unknown = schema;
  if (typeof schema === 'string') {
    try {
      value = JSON.parse(schema);
    } catch (e) {
      throw invalid(param, `${param} is a string but not JSON text holding a schema: ${(e as Error).message}`);
    }
  }
  if (!(typeof value === 'boolean' || (typeof value === 'object' && value !== null && !Array.isArray(value))))
    throw invalid(param, `${param} must be a JSON Schema (an object or a boolean)`);
  return { type: 'json_schema', schema: value as Record<string, unknown> | boolean, param };
}

function invalid(param: string, message: string): AutoGlmError {
  return new AutoGlmError('invalid_request', message, { param });
}
