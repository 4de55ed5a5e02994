import type { ToolDefinition } from './request-tools.js';
import { ToolCallBlocksParser } from './tool-call-blocks.js';
import type { ParsedToolCall } from './types.js';

/** One argument: whitespace (layout), then its key and its value in their tags; the value's text is taken as it is. */
const ARGUMENT = /\s*<arg_key>([^<]*)<\/arg_key>\s*<arg_value>([\s\S]*?)<\/arg_value>/y;

/**
 * GLM-4.5 / GLM-4.6 calls (vLLM's glm45): no JSON envelope, but the name and then each
 * argument in tags, between `<tool_call>` and `</tool_call>`, as GLM's chat template writes
 * them: `<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>`.
 * Models also leave the newlines out or put other whitespace between the tags: around the
 * name and between tags it is layout. The values carry no types, so they are read by the
 * request's tools, as vLLM reads them: a property its tool's schema types `string` keeps
 * its text (the template writes strings raw); any other value is the JSON its text parses
 * to (the template writes those with tojson), or its text when it does not parse. A block
 * that is not a name (no whitespace or '<' in it) and such arguments stays text, tags
 * included.
 */
export class Glm45ToolCallParser extends ToolCallBlocksParser {
  constructor(tools: readonly ToolDefinition[] | undefined) {
    super((body) => readCall(body, tools ?? []));
  }
}

function readCall(body: string, tools: readonly ToolDefinition[]): ParsedToolCall | null {
  // the name runs up to the first tag; one with whitespace inside is text that happens to be in a block
  const firstTag = body.indexOf('<');
  const nameEnd = firstTag < 0 ? body.length : firstTag;
  const name = body.slice(0, nameEnd).trim();
  if (name === '' || /\s/.test(name)) return null;
  const properties = propertiesOf(tools, name);
  // a Map, so that a key such as __proto__ is an argument like any other; a repeated key: the last value
  const args = new Map<string, unknown>();
  let at = nameEnd;
  for (;;) {
    ARGUMENT.lastIndex = at;
    const m = ARGUMENT.exec(body);
    if (!m) break;
    const key = m[1]!.trim();
    if (key === '') return null;
    args.set(key, argumentValue(m[2]!, properties?.[key]));
    at = ARGUMENT.lastIndex;
  }
  if (body.slice(at).trim() !== '') return null;
  return { name, arguments: JSON.stringify(Object.fromEntries(args)) };
}

/** The property schemas of the first tool of that name (none: every value is read as an unknown property's). */
function propertiesOf(tools: readonly ToolDefinition[], name: string): Record<string, unknown> | undefined {
  const properties = tools.find((t) => t.function.name === name)?.function.parameters?.properties;
  return isRecord(properties) ? properties : undefined;
}

function argumentValue(text: string, schema: unknown): unknown {
  if (isRecord(schema) && schema.type === 'string') return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
