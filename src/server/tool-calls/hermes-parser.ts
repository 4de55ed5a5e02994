import { toolCallFromJson } from './call-json.js';
import { ToolCallBlocksParser } from './tool-call-blocks.js';

/**
 * Hermes-style calls (Qwen2.5, Qwen3, Hermes and others): each call is a JSON object
 * `{"name": ..., "arguments": {...}}` between `<tool_call>` and `</tool_call>`, with text
 * before, between or after. A block whose body is not such an object (invalid JSON) stays
 * text, tags included.
 */
export class HermesToolCallParser extends ToolCallBlocksParser {
  constructor() {
    super((body) => toolCallFromJson(body, ['arguments']));
  }
}
