/**
 * The tool-call constraint (tool-call-grammar.ts) with the real Qwen3 tokenizer: masks at
 * the start of a required call (Qwen's `<tool_call>` added token allowed, as are its bytes),
 * inside the arguments, after the closing tag (EOS, or the next call when parallel); a named
 * choice allows only that name; llama3_json's envelope; refusals naming the tool's parameters.
 * glm45 (tags, no JSON envelope): what it accepts and refuses, its texts read back by the
 * server's glm45 parser with the values typed as the schema says, GLM-4.5's tags as added tokens.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { QWEN3, qwen3Constraints } from '../../helpers/qwen3.js';
import { GrammarAutomaton } from '../../../src/engine/constraints/automaton.js';
import { GrammarError } from '../../../src/engine/constraints/grammar.js';
import { ResponseFormatConstraints } from '../../../src/engine/constraints/response-format.js';
import { toolCallGrammar } from '../../../src/engine/constraints/tool-call-grammar.js';
import { bytesOfToken, tokenBytesOf } from '../../../src/engine/constraints/token-bytes.js';
import type { TokenConstraint } from '../../../src/engine/constraints/token-constraint.js';
import type { Tokenizer } from '../../../src/engine/tokenizer/tokenizer.js';
import type { ToolCallsFormat } from '../../../src/engine/types.js';
import { createToolCallParser } from '../../../src/server/tool-calls/parsers.js';
import type { ToolDefinition } from '../../../src/server/tool-calls/request-tools.js';
import { Rng } from '../../helpers/random.js';

const enc = new TextEncoder();
const QWEN_VOCAB = QWEN3.vocabSize;
const IM_END = QWEN3.imEnd;
const ENDOFTEXT = QWEN3.endOfText;
const TOOL_CALL = QWEN3.toolCall;
const TOOL_CALL_END = QWEN3.toolCallEnd;
const THINK = QWEN3.think;

const TOOLS: ToolCallsFormat['tools'] = [
  {
    name: 'get_weather',
    parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { enum: ['celsius', 'fahrenheit'] } }, required: ['city'] },
  },
  { name: 'get_time' },
];
const required = (extra: Partial<ToolCallsFormat> = {}): ToolCallsFormat => ({
  type: 'tool_calls',
  syntax: 'hermes',
  tools: TOOLS,
  parallel: true,
  ...extra,
});

let tok: Tokenizer;
let constraints: ResponseFormatConstraints;

beforeAll(async () => {
  ({ tok, constraints } = await qwen3Constraints());
});

function constraintFor(format: ToolCallsFormat): TokenConstraint {
  return constraints.constraint(constraints.compile(format)!);
}

function allows(c: TokenConstraint, id: number): boolean {
  return ((c.mask()[id >>> 5]! >>> (id & 31)) & 1) === 1;
}

function allowed(c: TokenConstraint): number[] {
  const out: number[] = [];
  for (let id = 0; id < QWEN_VOCAB; id++) if (allows(c, id)) out.push(id);
  return out;
}

/** Feeds text as the tokenizer splits it (Qwen's added tags become their single tokens). */
function feed(c: TokenConstraint, text: string): void {
  for (const id of tok.encode(text, { addSpecialTokens: false })) c.accept(id);
}

function single(text: string): number {
  const ids = tok.encode(text, { addSpecialTokens: false });
  expect(ids, text).toHaveLength(1);
  return ids[0]!;
}

describe('hermes tool calls with the Qwen3 tokenizer', () => {
  it('start: the <tool_call> added token (or its first byte), nothing else', () => {
    const c = constraintFor(required());
    expect(allows(c, TOOL_CALL)).toBe(true);
    expect(allows(c, single('<'))).toBe(true);
    for (const text of ['Hello', '{', '\n', ' ']) expect(allows(c, single(text)), text).toBe(false);
    // every allowed token's text is a prefix of the tag
    for (const id of allowed(c)) expect('<tool_call>\n'.startsWith(tok.decode([id])), tok.decode([id])).toBe(true);
    expect(allows(c, IM_END)).toBe(false);
  });

  it('the tag as its bytes continues the same way as the tag token', () => {
    const asToken = constraintFor(required());
    asToken.accept(TOOL_CALL);
    const asBytes = constraintFor(required());
    for (const piece of ['<', 'tool', '_call', '>']) asBytes.accept(single(piece));
    expect(allowed(asBytes)).toEqual(allowed(asToken));
    expect(allows(asToken, single('\n'))).toBe(true);
  });

  it('inside the arguments: the schema rules (string text allowed, the tags not where JSON is)', () => {
    const c = constraintFor(required());
    feed(c, '<tool_call>\n{"name": "get_weather", "arguments": {');
    expect(allows(c, single('"'))).toBe(true);
    expect(allows(c, single('}'))).toBe(false); // city is required
    expect(allows(c, TOOL_CALL_END)).toBe(false);
    feed(c, '"city": "Par');
    expect(allows(c, single('is'))).toBe(true);
    expect(allows(c, IM_END)).toBe(false);
    feed(c, 'is", "unit": "');
    expect(allows(c, single('c'))).toBe(true);
    expect(allows(c, single('k'))).toBe(false); // not an enum value
    feed(c, 'celsius"}');
    expect(allows(c, single('}'))).toBe(true); // closes the call object
    expect(allows(c, single(','))).toBe(false);
  });

  it('after the closing tag: EOS or the next call when parallel; only EOS when not', () => {
    const call = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>';
    const parallel = constraintFor(required());
    feed(parallel, '<tool_call>\n{"name": "get_time", "arguments": {}}\n');
    expect(allows(parallel, TOOL_CALL_END)).toBe(true);
    feed(parallel, '</tool_call>');
    expect(parallel.isComplete).toBe(true);
    expect(allows(parallel, IM_END) && allows(parallel, single('\n'))).toBe(true);
    expect(allows(parallel, TOOL_CALL)).toBe(false); // the separator comes first
    feed(parallel, `\n${call}`);
    expect(allows(parallel, IM_END)).toBe(true);

    const one = constraintFor(required({ parallel: false }));
    feed(one, call);
    expect(allowed(one)).toEqual([ENDOFTEXT, IM_END]);
  });

  it('a named choice allows only that name', () => {
    const named = constraintFor(required({ forcedName: 'get_time' }));
    feed(named, '<tool_call>\n{"name": "get_');
    expect(allows(named, single('time'))).toBe(true);
    expect(allows(named, single('weather'))).toBe(false);
    // get_time has no parameters: any object
    feed(named, 'time", "arguments": {"anything": [1, "two"]}}\n</tool_call>');
    expect(named.isComplete).toBe(true);
    const any = constraintFor(required());
    feed(any, '<tool_call>\n{"name": "get_');
    expect(allows(any, single('time')) && allows(any, single('weather'))).toBe(true);
  });

  it('admits only the tags among added and special tokens', () => {
    const tokens = tokenBytesOf(tok, QWEN_VOCAB, { admittedAddedTokens: ['<tool_call>', '</tool_call>'] });
    expect(new TextDecoder().decode(bytesOfToken(tokens, TOOL_CALL))).toBe('<tool_call>');
    expect(new TextDecoder().decode(bytesOfToken(tokens, TOOL_CALL_END))).toBe('</tool_call>');
    for (const id of [THINK, IM_END, ENDOFTEXT, 151644]) expect(bytesOfToken(tokens, id), String(id)).toHaveLength(0);
    // a special token is never admitted, even when named
    const special = tokenBytesOf(tok, QWEN_VOCAB, { admittedAddedTokens: ['<|im_start|>'] });
    expect(bytesOfToken(special, 151644)).toHaveLength(0);
  });
});

describe('the tool-call grammar', () => {
  const accepts = (format: ToolCallsFormat, text: string): boolean => {
    const a = new GrammarAutomaton(toolCallGrammar(format));
    const state = a.advanceBytes(a.initial(), enc.encode(text));
    return state.length > 0 && a.isComplete(state);
  };

  it('llama3_json: {"name", "parameters"} objects joined by "; "', () => {
    const f = required({ syntax: 'llama3_json' });
    expect(accepts(f, '{"name": "get_weather", "parameters": {"city": "Paris"}}')).toBe(true);
    expect(accepts(f, '{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {}}')).toBe(true);
    expect(accepts(f, '{"name": "get_weather", "arguments": {"city": "Paris"}}')).toBe(false);
    expect(accepts(f, '{"name": "get_weather", "parameters": {}}')).toBe(false); // city is required
    expect(accepts({ ...f, parallel: false }, '{"name": "get_time", "parameters": {}}; {"name": "get_time", "parameters": {}}')).toBe(
      false,
    );
  });

  it('hermes: no text before or between calls, names only of the tools', () => {
    const f = required();
    const call = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>';
    expect(accepts(f, call)).toBe(true);
    expect(accepts(f, `${call}\n${call}`)).toBe(true);
    expect(accepts(f, `Sure. ${call}`)).toBe(false);
    expect(accepts(f, call.replace('get_time', 'rm_rf'))).toBe(false);
    expect(accepts({ ...f, parallel: false }, `${call}\n${call}`)).toBe(false);
  });

  it('refuses a tool schema it cannot enforce, naming tools.N.function.parameters and the keyword', () => {
    const tools = [TOOLS[1]!, { name: 'search', parameters: { type: 'object', properties: { q: { type: 'string', pattern: '^a' } } } }];
    let error: unknown;
    try {
      toolCallGrammar(required({ tools }));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(GrammarError);
    expect(error).toMatchObject({ param: 'tools.1.function.parameters', message: expect.stringContaining("'pattern'") });
    // a named choice compiles only its own tool
    expect(() => toolCallGrammar(required({ tools, forcedName: 'get_time' }))).not.toThrow();
  });
});

describe('glm45 tool calls', () => {
  /** Tools whose parameters exercise glm45's values: raw strings (with enum, maxLength), JSON of other types, a $ref. */
  const GLM_TOOLS: ToolCallsFormat['tools'] = [
    {
      name: 'get_weather',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' }, days: { type: 'integer' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
        required: ['city'],
      },
    },
    { name: 'get_time' },
    {
      name: 'set',
      parameters: {
        type: 'object',
        $defs: { Level: { type: 'integer' } },
        properties: {
          on: { type: 'boolean' },
          opts: { type: 'object', properties: { a: { type: 'number' } }, required: ['a'] },
          tags: { type: 'array', items: { type: 'string' }, maxItems: 3 },
          note: { type: 'string', maxLength: 5 },
          level: { $ref: '#/$defs/Level' },
        },
      },
    },
  ];
  /** The same tools as the request sends them, for the parser. */
  const REQUEST_TOOLS: ToolDefinition[] = GLM_TOOLS.map((t) => ({
    type: 'function',
    function: { name: t.name, ...(t.parameters === undefined ? {} : { parameters: t.parameters as Record<string, unknown> }) },
  }));
  const glm = (extra: Partial<ToolCallsFormat> = {}): ToolCallsFormat => required({ syntax: 'glm45', tools: GLM_TOOLS, ...extra });
  const accepts = (format: ToolCallsFormat, text: string): boolean => {
    const a = new GrammarAutomaton(toolCallGrammar(format));
    const state = a.advanceBytes(a.initial(), enc.encode(text));
    return state.length > 0 && a.isComplete(state);
  };
  const parsed = (text: string): { content: string; calls: { name: string; arguments: unknown }[] } => {
    const parser = createToolCallParser('glm45', REQUEST_TOOLS);
    const out = { content: '', calls: [] as { name: string; arguments: unknown }[] };
    for (const e of [...parser.push(text), ...parser.end()]) {
      if (e.kind === 'text') out.content += e.text;
      else out.calls.push({ name: e.call.name, arguments: JSON.parse(e.call.arguments) });
    }
    return out;
  };
  const arg = (key: string, value: string): string => `<arg_key>${key}</arg_key>\n<arg_value>${value}</arg_value>\n`;

  it.each<[string, string, { name: string; arguments: unknown }[]]>([
    [
      'required and optional arguments',
      `<tool_call>get_weather\n${arg('city', 'Paris')}${arg('days', '3')}</tool_call>`,
      [{ name: 'get_weather', arguments: { city: 'Paris', days: 3 } }],
    ],
    [
      'a raw string with quotes, commas and UTF-8; an enum string as its text; then a call without arguments',
      `<tool_call>get_weather\n${arg('city', 'Zürich, "東京"\nand more')}${arg('unit', 'celsius')}</tool_call>\n<tool_call>get_time\n</tool_call>`,
      [
        { name: 'get_weather', arguments: { city: 'Zürich, "東京"\nand more', unit: 'celsius' } },
        { name: 'get_time', arguments: {} },
      ],
    ],
    ['an empty string', `<tool_call>get_weather\n${arg('city', '')}</tool_call>`, [{ name: 'get_weather', arguments: { city: '' } }]],
    [
      'JSON values of other types, a digit string where the schema says string, a $ref',
      `<tool_call>set\n${arg('on', 'true')}${arg('opts', '{"a": 1.5}')}${arg('tags', '["x", "y"]')}${arg('note', '42')}${arg('level', '-2')}</tool_call>`,
      [{ name: 'set', arguments: { on: true, opts: { a: 1.5 }, tags: ['x', 'y'], note: '42', level: -2 } }],
    ],
    ['no arguments at all (none required)', '<tool_call>set\n</tool_call>', [{ name: 'set', arguments: {} }]],
  ])('accepts %s, and the parser reads it back', (_name, text, calls) => {
    expect(accepts(glm(), text)).toBe(true);
    expect(parsed(text)).toEqual({ content: '', calls });
  });

  it.each([
    ['a name not among the tools', `<tool_call>get_date\n</tool_call>`],
    ['a key the schema does not declare', `<tool_call>get_weather\n${arg('city', 'Paris')}${arg('town', 'Paris')}</tool_call>`],
    ['a required property left out', `<tool_call>get_weather\n${arg('days', '3')}</tool_call>`],
    ['a non-JSON value for an integer property', `<tool_call>get_weather\n${arg('city', 'Paris')}${arg('days', 'three')}</tool_call>`],
    ['a number that is not an integer', `<tool_call>get_weather\n${arg('city', 'Paris')}${arg('days', '2.5')}</tool_call>`],
    ["'<' in a raw string", `<tool_call>get_weather\n${arg('city', 'a<b')}</tool_call>`],
    ['a raw string past its maxLength', `<tool_call>set\n${arg('note', 'abcdef')}</tool_call>`],
    [
      'an enum string not among its values, or quoted',
      `<tool_call>get_weather\n${arg('city', 'x')}${arg('unit', '"celsius"')}</tool_call>`,
    ],
    ['keys out of the schema order', `<tool_call>get_weather\n${arg('days', '3')}${arg('city', 'Paris')}</tool_call>`],
    ['the same key twice', `<tool_call>get_weather\n${arg('city', 'Paris')}${arg('city', 'Rome')}</tool_call>`],
    ['text before the call', `Sure. <tool_call>get_time\n</tool_call>`],
    ['a layout other than the template writes', `<tool_call>get_time</tool_call>`],
  ])('refuses %s', (_name, text) => {
    expect(accepts(glm(), text)).toBe(false);
  });

  it('parallel calls only when allowed; a named choice only that name', () => {
    const two = '<tool_call>get_time\n</tool_call>\n<tool_call>get_time\n</tool_call>';
    expect(accepts(glm(), two)).toBe(true);
    expect(accepts(glm({ parallel: false }), two)).toBe(false);
    expect(accepts(glm({ forcedName: 'get_time' }), '<tool_call>get_time\n</tool_call>')).toBe(true);
    expect(accepts(glm({ forcedName: 'get_time' }), `<tool_call>get_weather\n${arg('city', 'Paris')}</tool_call>`)).toBe(false);
  });

  it('random texts of the grammar: the parser reads each back as calls whose values have their schema types', () => {
    const a = new GrammarAutomaton(toolCallGrammar(glm()));
    const props = (name: string): Record<string, { type?: string; enum?: string[]; maxLength?: number }> =>
      ((GLM_TOOLS.find((t) => t.name === name)!.parameters as { properties?: object } | undefined)?.properties ?? {}) as Record<
        string,
        { type?: string }
      >;
    let callsSeen = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const rng = new Rng(seed);
      let state = a.initial();
      const bytes: number[] = [];
      // a walk over allowed bytes, leaning towards '<' (which closes a value) so that it ends
      while (!(a.isComplete(state) && (rng.next() < 0.3 || bytes.length > 2000))) {
        const allowed = [...Array(256).keys()].filter((b) => a.advance(state, b).length > 0);
        const ascii = allowed.filter((b) => b >= 0x20 && b < 0x7f);
        const b =
          allowed.includes(0x3c) && rng.next() < 0.3
            ? 0x3c
            : ascii.length > 0
              ? ascii[rng.int(ascii.length)]!
              : allowed[rng.int(allowed.length)]!;
        state = a.advance(state, b);
        bytes.push(b);
      }
      const text = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
      const read = parsed(text);
      expect(read.content, text).toBe('');
      expect(read.calls.length, text).toBeGreaterThan(0);
      for (const call of read.calls) {
        const schema = props(call.name);
        for (const [key, value] of Object.entries(call.arguments as Record<string, unknown>)) {
          const type = schema[key]!.type ?? 'integer'; // level: the $ref's type
          const expected = type === 'integer' ? 'number' : type === 'array' ? 'object' : type;
          expect(typeof value, `${text}: ${key}`).toBe(expected);
          if (type === 'integer') expect(Number.isInteger(value), text).toBe(true);
        }
        if (call.name === 'get_weather') expect(Object.keys(call.arguments as object)).toContain('city');
        callsSeen++;
      }
    }
    expect(callsSeen).toBeGreaterThan(60);
  });

  it('schemas it cannot write are refused, naming the tool', () => {
    const refusal = (tools: ToolCallsFormat['tools']): unknown => {
      try {
        toolCallGrammar(glm({ tools }));
      } catch (e) {
        return e;
      }
      return null;
    };
    expect(refusal([{ name: 'get weather' }])).toMatchObject({ param: 'tools.0.function.name' });
    expect(
      refusal([GLM_TOOLS[1]!, { name: 'f', parameters: { type: 'object', properties: { q: { type: 'string', pattern: '^a' } } } }]),
    ).toMatchObject({
      param: 'tools.1.function.parameters',
      message: expect.stringContaining("'pattern'"),
    });
    expect(refusal([{ name: 'f', parameters: { properties: { u: { type: 'string', enum: ['<b>'] } } } }])).toMatchObject({
      param: 'tools.0.function.parameters',
    });
    expect(refusal([{ name: 'f', parameters: { properties: { ' k': { type: 'integer' } } } }])).toMatchObject({
      param: 'tools.0.function.parameters',
    });
  });

  it("GLM-4.5's tags as added tokens: admitted as their text, each the single token a model writes", () => {
    const TAGS = ['<tool_call>', '</tool_call>', '<arg_key>', '</arg_key>', '<arg_value>', '</arg_value>'];
    const EOS = 256;
    const tagId = (tag: string): number => 257 + TAGS.indexOf(tag);
    // bytes 0-255, EOS, then the tags as added tokens that are not special (as in GLM-4.5's tokenizer)
    const vocabulary = {
      baseVocabSize: 256,
      tokenString: (id: number) => (id < 256 ? String.fromCharCode(id) : id === EOS ? '<|endoftext|>' : TAGS[id - 257]),
      decode: (ids: readonly number[]) => ids.map((id) => (id < 256 ? String.fromCharCode(id) : id === EOS ? '' : TAGS[id - 257])).join(''),
      isSpecial: (id: number) => id === EOS,
    };
    const glmConstraints = new ResponseFormatConstraints({ vocabulary, vocabSize: 257 + TAGS.length, eosTokenIds: [EOS] });
    const c = glmConstraints.constraint(glmConstraints.compile(glm({ forcedName: 'get_weather', parallel: false }))!);
    const allowsId = (id: number): boolean => ((c.mask()[id >>> 5]! >>> (id & 31)) & 1) === 1;
    expect(allowsId(tagId('<tool_call>')) && allowsId(0x3c)).toBe(true);
    for (const id of [tagId('<arg_key>'), tagId('</tool_call>'), EOS, 0x67]) expect(allowsId(id)).toBe(false);
    const write = (...pieces: (string | number)[]): void => {
      for (const p of pieces) {
        if (typeof p === 'number') c.accept(p);
        else for (const ch of p) c.accept(ch.charCodeAt(0));
      }
    };
    write(tagId('<tool_call>'), 'get_weather\n');
    expect(allowsId(tagId('<arg_key>'))).toBe(true);
    expect(allowsId(tagId('</tool_call>'))).toBe(false); // city is required
    write(tagId('<arg_key>'), 'city', tagId('</arg_key>'), '\n', tagId('<arg_value>'), 'Paris');
    expect(allowsId(tagId('</arg_value>'))).toBe(true);
    write(tagId('</arg_value>'), '\n');
    expect(allowsId(tagId('</tool_call>')) && allowsId(tagId('<arg_key>'))).toBe(true);
    write(tagId('</tool_call>'));
    expect(c.isComplete).toBe(true);
    expect(allowsId(EOS)).toBe(true);
  });
});
