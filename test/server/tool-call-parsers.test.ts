/**
 * The tool-call parsers on their own: whole outputs, the same outputs fed in every split
 * (streamed tokens cut text anywhere), and the property a resumed stream relies on: what
 * has come out after a prefix does not depend on how the prefix was split.
 */
import { describe, expect, test } from 'vitest';
import { ChoiceToolCalls } from '../../src/server/tool-calls/choice-tool-calls.js';
import { createToolCallParser } from '../../src/server/tool-calls/parsers.js';
import { detectToolCallFormat, templateReadsTools } from '../../src/server/tool-calls/template-tool-support.js';
import type { ToolDefinition } from '../../src/server/tool-calls/request-tools.js';
import type { ParsedToolCall, ToolCallEvent, ToolCallFormat } from '../../src/server/tool-calls/types.js';
import { Rng } from '../helpers/random.js';

interface Read {
  content: string;
  calls: ParsedToolCall[];
}

function collect(events: ToolCallEvent[], into: Read): Read {
  for (const e of events) {
    if (e.kind === 'text') into.content += e.text;
    else into.calls.push(e.call);
  }
  return into;
}

function readWhole(format: ToolCallFormat, text: string, tools?: ToolDefinition[]): Read {
  const parser = createToolCallParser(format, tools);
  const read = collect(parser.push(text), { content: '', calls: [] });
  return collect(parser.end(), read);
}

function readPieces(format: ToolCallFormat, pieces: string[], tools?: ToolDefinition[]): Read {
  const parser = createToolCallParser(format, tools);
  const read: Read = { content: '', calls: [] };
  for (const p of pieces) collect(parser.push(p), read);
  return collect(parser.end(), read);
}

/** Random cuts (1 to 6 characters), several seeds, plus one character at a time. */
function splits(text: string): string[][] {
  const out: string[][] = [[...text]];
  for (let seed = 1; seed <= 20; seed++) {
    const rng = new Rng(seed);
    const pieces: string[] = [];
    for (let at = 0; at < text.length;) {
      const n = 1 + rng.int(6);
      pieces.push(text.slice(at, at + n));
      at += n;
    }
    out.push(pieces);
  }
  return out;
}

const weather = { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' };
const time = { name: 'get_time', arguments: '{"tz":"CET"}' };

describe('hermes', () => {
  const cases: [string, string, Read][] = [
    [
      'text, then two calls (Qwen layout)',
      'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>',
      { content: 'Let me check.', calls: [weather, time] },
    ],
    ['a call alone', '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>', { content: '', calls: [time] }],
    [
      'text between and after calls stays content, separated by the whitespace before the calls',
      'A\n\n<tool_call>{"name": "get_time", "arguments": {"tz": "CET"}}</tool_call> <tool_call>{"name": "get_time", "arguments": {"tz": "CET"}}</tool_call>\nB\n',
      { content: 'A\n\nB\n', calls: [time, time] },
    ],
    [
      'invalid JSON in a block stays text, tags and whitespace included',
      'Sure.\n<tool_call>\n{"name": "get_time", "arguments": {tz: CET}}\n</tool_call>',
      { content: 'Sure.\n<tool_call>\n{"name": "get_time", "arguments": {tz: CET}}\n</tool_call>', calls: [] },
    ],
    [
      'a JSON object that is not a call stays text',
      '<tool_call>{"tool": "x"}</tool_call>',
      { content: '<tool_call>{"tool": "x"}</tool_call>', calls: [] },
    ],
    [
      'a block cut off before it closes stays text',
      'Hm <tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}',
      { content: 'Hm <tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}', calls: [] },
    ],
    ['no call: the text exactly, whitespace and all', '  Hello, <tool world>\n\n', { content: '  Hello, <tool world>\n\n', calls: [] }],
    ['a tag prefix at the very end is released', 'see <tool_ca', { content: 'see <tool_ca', calls: [] }],
    [
      'arguments written as JSON text are taken; missing arguments are none',
      '<tool_call>{"name": "get_time", "arguments": "{\\"tz\\": \\"CET\\"}"}</tool_call><tool_call>{"name": "now"}</tool_call>',
      { content: '', calls: [time, { name: 'now', arguments: '{}' }] },
    ],
    [
      'a close tag inside a string argument still closes the block (as in vLLM); the body is then invalid',
      '<tool_call>{"name": "say", "arguments": {"s": "</tool_call>"}}</tool_call>',
      { content: '<tool_call>{"name": "say", "arguments": {"s": "</tool_call>"}}</tool_call>', calls: [] },
    ],
  ];
  test.each(cases)('%s: whole, and in every split', (_name, text, expected) => {
    expect(readWhole('hermes', text)).toEqual(expected);
    for (const pieces of splits(text)) expect(readPieces('hermes', pieces)).toEqual(expected);
  });
});

describe('llama3_json', () => {
  const cases: [string, string, Read][] = [
    ['one call', '{"name": "get_time", "parameters": {"tz": "CET"}}', { content: '', calls: [time] }],
    [
      'after <|python_tag|> and whitespace, several separated by ;',
      ' <|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}; {"name": "get_time", "arguments": {"tz": "CET"}};\n',
      { content: '', calls: [weather, time] },
    ],
    [
      'text that does not open with a call is all text',
      'The answer is {"name": "x"}.',
      { content: 'The answer is {"name": "x"}.', calls: [] },
    ],
    ['a JSON object that is not a call stays text', '{"answer": 42}', { content: '{"answer": 42}', calls: [] }],
    [
      'invalid JSON stays text, from the tag on',
      '<|python_tag|>{"name": "get_time", "parameters": {tz}}',
      { content: '<|python_tag|>{"name": "get_time", "parameters": {tz}}', calls: [] },
    ],
    [
      'braces inside strings do not close the object',
      '{"name": "echo", "parameters": {"s": "a } and a \\" {"}}',
      { content: '', calls: [{ name: 'echo', arguments: '{"s":"a } and a \\" {"}' }] },
    ],
    [
      'text after a call stays text',
      '{"name": "get_time", "parameters": {"tz": "CET"}} and that is all',
      { content: 'and that is all', calls: [time] },
    ],
    ['cut off inside the object: text', '{"name": "get_time", "param', { content: '{"name": "get_time", "param', calls: [] }],
  ];
  test.each(cases)('%s: whole, and in every split', (_name, text, expected) => {
    expect(readWhole('llama3_json', text)).toEqual(expected);
    for (const pieces of splits(text)) expect(readPieces('llama3_json', pieces)).toEqual(expected);
  });
});

/** Tools whose schemas type glm45's values: string-typed properties keep their text, others are JSON. */
const GLM_TOOLS: ToolDefinition[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
    },
  },
  {
    type: 'function',
    function: {
      name: 'set',
      parameters: {
        type: 'object',
        properties: {
          count: { type: 'integer' },
          on: { type: 'boolean' },
          opts: { type: 'object' },
          tags: { type: 'array' },
          code: { type: 'string' },
        },
      },
    },
  },
  { type: 'function', function: { name: 'ls' } },
];

describe('glm45', () => {
  const cases: [string, string, Read][] = [
    [
      'text, then two calls (GLM layout); values typed by the tool, a tool not in tools reads its values as JSON or text',
      'Let me check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>\n<tool_call>get_time\n<arg_key>tz</arg_key>\n<arg_value>CET</arg_value>\n</tool_call>',
      { content: 'Let me check.', calls: [{ name: 'get_weather', arguments: '{"city":"Paris","days":3}' }, time] },
    ],
    [
      'without newlines',
      '<tool_call>ls<arg_key>dirPath</arg_key><arg_value>backend</arg_value></tool_call>',
      { content: '', calls: [{ name: 'ls', arguments: '{"dirPath":"backend"}' }] },
    ],
    [
      'whitespace around the name, the key and between tags is layout',
      '<tool_call>  get_weather \n\n<arg_key> city </arg_key>  \n <arg_value>Paris</arg_value>\n\n</tool_call>',
      { content: '', calls: [{ name: 'get_weather', arguments: '{"city":"Paris"}' }] },
    ],
    [
      'calls without arguments',
      '<tool_call>get_time\n</tool_call><tool_call>ls</tool_call>',
      {
        content: '',
        calls: [
          { name: 'get_time', arguments: '{}' },
          { name: 'ls', arguments: '{}' },
        ],
      },
    ],
    [
      'typed values: JSON unless the schema types the property string; unknown ones JSON when they parse',
      '<tool_call>set\n<arg_key>count</arg_key>\n<arg_value>42</arg_value>\n<arg_key>on</arg_key>\n<arg_value>true</arg_value>\n' +
        '<arg_key>opts</arg_key>\n<arg_value>{"a": [1, null]}</arg_value>\n<arg_key>tags</arg_key>\n<arg_value>["x", "y"]</arg_value>\n' +
        '<arg_key>code</arg_key>\n<arg_value>42</arg_value>\n<arg_key>note</arg_key>\n<arg_value>{"k": 1.5}</arg_value>\n' +
        '<arg_key>word</arg_key>\n<arg_value>hello world</arg_value>\n</tool_call>',
      {
        content: '',
        calls: [
          {
            name: 'set',
            arguments: '{"count":42,"on":true,"opts":{"a":[1,null]},"tags":["x","y"],"code":"42","note":{"k":1.5},"word":"hello world"}',
          },
        ],
      },
    ],
    [
      'a value that is not JSON where JSON was expected stays its text',
      '<tool_call>set<arg_key>count</arg_key><arg_value>about 3</arg_value></tool_call>',
      { content: '', calls: [{ name: 'set', arguments: '{"count":"about 3"}' }] },
    ],
    [
      "a string value is taken verbatim: whitespace, newlines, '<' and quotes",
      '<tool_call>set\n<arg_key>code</arg_key>\n<arg_value>  if (a < b) {\n  "x"\n}\n</arg_value>\n</tool_call>',
      { content: '', calls: [{ name: 'set', arguments: JSON.stringify({ code: '  if (a < b) {\n  "x"\n}\n' }) }] },
    ],
    [
      'a repeated key: the last value',
      '<tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value><arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>',
      { content: '', calls: [{ name: 'get_weather', arguments: '{"city":"Paris"}' }] },
    ],
    [
      'text between and after calls stays content, separated by the whitespace before the calls',
      'A\n\n<tool_call>get_time\n</tool_call> <tool_call>ls</tool_call>\nB\n',
      {
        content: 'A\n\nB\n',
        calls: [
          { name: 'get_time', arguments: '{}' },
          { name: 'ls', arguments: '{}' },
        ],
      },
    ],
    [
      'a block without a name stays text, tags and whitespace included',
      'Sure.\n<tool_call>\n<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>',
      { content: 'Sure.\n<tool_call>\n<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>', calls: [] },
    ],
    [
      'a hermes-style JSON body is not a name: text',
      '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
      { content: '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>', calls: [] },
    ],
    [
      'text between the tags of an argument: text',
      '<tool_call>get_weather\n<arg_key>city</arg_key> is <arg_value>Paris</arg_value></tool_call>',
      { content: '<tool_call>get_weather\n<arg_key>city</arg_key> is <arg_value>Paris</arg_value></tool_call>', calls: [] },
    ],
    [
      'a value that never closes: text',
      '<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris\n</tool_call>',
      { content: '<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris\n</tool_call>', calls: [] },
    ],
    [
      'an empty key: text',
      '<tool_call>ls<arg_key> </arg_key><arg_value>x</arg_value></tool_call>',
      { content: '<tool_call>ls<arg_key> </arg_key><arg_value>x</arg_value></tool_call>', calls: [] },
    ],
    [
      'a block cut off before it closes stays text',
      'Hm <tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Par',
      { content: 'Hm <tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Par', calls: [] },
    ],
    ['a tag prefix at the very end is released', 'see <tool_ca', { content: 'see <tool_ca', calls: [] }],
  ];
  test.each(cases)('%s: whole, and in every split', (_name, text, expected) => {
    expect(readWhole('glm45', text, GLM_TOOLS)).toEqual(expected);
    for (const pieces of splits(text)) expect(readPieces('glm45', pieces, GLM_TOOLS)).toEqual(expected);
  });

  test('without tools every value is read as JSON when it parses, else as text', () => {
    const text =
      '<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>zip</arg_key>\n<arg_value>75001</arg_value>\n</tool_call>';
    expect(readWhole('glm45', text)).toEqual({ content: '', calls: [{ name: 'get_weather', arguments: '{"city":"Paris","zip":75001}' }] });
  });
});

test.each(['hermes', 'llama3_json', 'glm45'] as const)(
  '%s: what has come out after a prefix is the same however the prefix was split (a resume replays it whole)',
  (format) => {
    const text = {
      hermes:
        'Checking.\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>\nDone <tool_call>{bad}</tool_call> ok',
      llama3_json:
        '<|python_tag|>{"name": "get_time", "parameters": {"tz": "CET"}}; {"name": "get_weather", "parameters": {"city": "Paris"}} tail',
      glm45:
        'Checking.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>\nDone <tool_call>get_time <arg_value>x</tool_call> ok',
    }[format];
    for (let cut = 0; cut <= text.length; cut++) {
      const whole = collect(createToolCallParser(format, GLM_TOOLS).push(text.slice(0, cut)), { content: '', calls: [] });
      for (const pieces of splits(text.slice(0, cut)).slice(0, 5)) {
        const parser = createToolCallParser(format, GLM_TOOLS);
        const read: Read = { content: '', calls: [] };
        for (const p of pieces) collect(parser.push(p), read);
        expect(read).toEqual(whole);
      }
    }
  },
);

describe('a choice: numbering, ids, replay, parallel_tool_calls', () => {
  const twoCalls =
    '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}</tool_call><tool_call>{"name": "get_time", "arguments": {"tz": "CET"}}</tool_call>';

  test('calls are numbered from 0 with distinct call_ ids', () => {
    const choice = new ChoiceToolCalls(createToolCallParser('hermes', undefined), { parallelToolCalls: true });
    const delta = choice.push(twoCalls);
    expect(delta.toolCalls.map((c) => [c.index, c.function.name, c.type])).toEqual([
      [0, 'get_weather', 'function'],
      [1, 'get_time', 'function'],
    ]);
    expect(delta.toolCalls[0]!.id).toMatch(/^call_[0-9a-f]{24}$/);
    expect(delta.toolCalls[0]!.id).not.toBe(delta.toolCalls[1]!.id);
    expect(choice.called).toBe(true);
  });

  test('replayed text yields nothing, and numbering continues after the replayed calls', () => {
    const cut = twoCalls.indexOf('<tool_call>', 1) + 5; // inside the second call's open tag
    const choice = new ChoiceToolCalls(createToolCallParser('hermes', undefined), { parallelToolCalls: true });
    choice.replay(twoCalls.slice(0, cut));
    expect(choice.called).toBe(true);
    const rest = choice.push(twoCalls.slice(cut));
    expect(rest.content).toBe('');
    expect(rest.toolCalls.map((c) => [c.index, c.function.name])).toEqual([[1, 'get_time']]);
  });

  test('parallel_tool_calls false keeps the first call only', () => {
    const choice = new ChoiceToolCalls(createToolCallParser('hermes', undefined), { parallelToolCalls: false });
    const delta = choice.push(twoCalls);
    expect(delta.toolCalls.map((c) => c.function.name)).toEqual(['get_weather']);
  });
});

describe('format detection from the chat template source', () => {
  test('the markers each format writes; a template that never reads tools has none', () => {
    expect(detectToolCallFormat('{% if tools %}<tool_call>{% endif %}')).toBe('hermes');
    // GLM-4.5's calls are in <tool_call> too: its <arg_key> decides
    expect(detectToolCallFormat('{% if tools %}<tool_call>{{ name }}\n<arg_key>{{ k }}</arg_key>{% endif %}')).toBe('glm45');
    expect(detectToolCallFormat('<arg_key> without the variable')).toBeNull();
    expect(detectToolCallFormat('{% if tools %}{{ \'"parameters": \' }}{% endif %}')).toBe('llama3_json');
    expect(detectToolCallFormat('{% if tools %}<|python_tag|>{% endif %}')).toBe('llama3_json');
    expect(detectToolCallFormat('{% if tools %}[TOOL_CALLS]{% endif %}')).toBeNull();
    expect(detectToolCallFormat('<tool_call> without the variable')).toBeNull();
    expect(templateReadsTools('{{ messages }}')).toBe(false);
    expect(templateReadsTools('{%- if tools is not none %}')).toBe(true);
  });
});
