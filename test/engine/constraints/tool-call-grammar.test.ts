/**
 * The tool-call constraint (tool-call-grammar.ts) with the real Qwen3 tokenizer: masks at
 * the start of a required call (Qwen's `<tool_call>` added token allowed, as are its bytes),
 * inside the arguments, after the closing tag (EOS, or the next call when parallel); a named
 * choice allows only that name; llama3_json's envelope; refusals naming the tool's parameters.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { QWEN3, qwen3Constraints } from '../../helpers/qwen3.js';
import { GrammarAutomaton } from '../../../src/engine/constraints/automaton.js';
import { GrammarError } from '../../../src/engine/constraints/grammar.js';
import type { ResponseFormatConstraints } from '../../../src/engine/constraints/response-format.js';
import { toolCallGrammar } from '../../../src/engine/constraints/tool-call-grammar.js';
import { bytesOfToken, tokenBytesOf } from '../../../src/engine/constraints/token-bytes.js';
import type { TokenConstraint } from '../../../src/engine/constraints/token-constraint.js';
import type { Tokenizer } from '../../../src/engine/tokenizer/tokenizer.js';
import type { ToolCallsFormat } from '../../../src/engine/types.js';

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
