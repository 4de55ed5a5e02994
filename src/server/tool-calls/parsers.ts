import { HermesToolCallParser } from './hermes-parser.js';
import { Llama3JsonToolCallParser } from './llama3-json-parser.js';
import type { ToolCallFormat, ToolCallStreamParser } from './types.js';

export function createToolCallParser(format: ToolCallFormat): ToolCallStreamParser {
  switch (format) {
    case 'hermes':
      return new HermesToolCallParser();
    case 'llama3_json':
      return new Llama3JsonToolCallParser();
  }
}
