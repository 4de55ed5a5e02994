import { Glm45ToolCallParser } from './glm45-parser.js';
import { HermesToolCallParser } from './hermes-parser.js';
import { Llama3JsonToolCallParser } from './llama3-json-parser.js';
import type { ToolDefinition } from './request-tools.js';
import type { ToolCallFormat, ToolCallStreamParser } from './types.js';

/** `tools`: the request's, which glm45 reads its argument values by (its calls carry no JSON). */
export function createToolCallParser(format: ToolCallFormat, tools: readonly ToolDefinition[] | undefined): ToolCallStreamParser {
  switch (format) {
    case 'hermes':
      return new HermesToolCallParser();
    case 'llama3_json':
      return new Llama3JsonToolCallParser();
    case 'glm45':
      return new Glm45ToolCallParser(tools);
  }
}
