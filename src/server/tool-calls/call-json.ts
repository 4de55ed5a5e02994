import type { ParsedToolCall } from './types.js';

/**
 * A call written as a JSON object, `{"name": ..., <argumentsKey>: {...}}`, or null when the
 * text is not one (then it stays text). Arguments are an object (or JSON text of one, which
 * some models write); a call without them takes none. They are re-serialised, so what a
 * client gets is always valid JSON text.
 */
export function toolCallFromJson(text: string, argumentKeys: readonly string[]): ParsedToolCall | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(value) || typeof value.name !== 'string' || value.name === '') return null;
  const key = argumentKeys.find((k) => k in value);
  const args = key === undefined ? {} : objectOrJsonOfOne(value[key]);
  return args === null ? null : { name: value.name, arguments: JSON.stringify(args) };
}

function objectOrJsonOfOne(value: unknown): Record<string, unknown> | null {
  if (isObject(value)) return value;
  if (typeof value !== 'string') return null;
  try {
    const parsed: unknown = JSON.parse(value);
    return isObject(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
