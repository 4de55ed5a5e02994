/**
 * The reasoning gate (reasoning-gate.ts) with the real Qwen3 tokenizer, whose `<think>` and
 * `</think>` are single added tokens: no mask while the model reasons, the format's mask
 * once the end tag is written (as one token, or spelled out over several, with or without
 * the answer's first text in the same token); an output that may open reasoning allows the
 * start tag or the format's first text, and commits to whichever comes; a tool-call format
 * restarts after the reasoning even when its first byte was shared with the tag.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { QWEN3, qwen3Constraints } from '../../helpers/qwen3.js';
import type { ResponseFormatConstraints } from '../../../src/engine/constraints/response-format.js';
import type { OutputConstraint } from '../../../src/engine/constraints/token-constraint.js';
import type { Tokenizer } from '../../../src/engine/tokenizer/tokenizer.js';
import type { ReasoningTags, ResponseFormat } from '../../../src/engine/types.js';

const IM_END = QWEN3.imEnd;
const TOOL_CALL = QWEN3.toolCall;
const THINK = QWEN3.think;
const THINK_END = QWEN3.thinkEnd;
const INSIDE: ReasoningTags = { start: '<think>', end: '</think>', startsInside: true };
const MAY_OPEN: ReasoningTags = { ...INSIDE, startsInside: false };
const JSON_OBJECT: ResponseFormat = { type: 'json_object' };
const REQUIRED_CALL: ResponseFormat = {
  type: 'tool_calls',
  syntax: 'hermes',
  tools: [{ name: 'get_time', parameters: { type: 'object', properties: {} } }],
  parallel: false,
};

let tok: Tokenizer;
let constraints: ResponseFormatConstraints;

beforeAll(async () => {
  ({ tok, constraints } = await qwen3Constraints());
});

const gate = (tags: ReasoningTags, format: ResponseFormat = JSON_OBJECT): OutputConstraint =>
  constraints.constraintAfter(constraints.compile(format)!, tags);

function allows(c: OutputConstraint, id: number): boolean {
  const mask = c.mask();
  return mask === null || ((mask[id >>> 5]! >>> (id & 31)) & 1) === 1;
}

/** Token ids of a text as the tokenizer splits it (`<think>`, `</think>` and `<tool_call>` become their single tokens). */
const ids = (text: string): number[] => tok.encode(text, { addSpecialTokens: false });
const single = (text: string): number => {
  const found = ids(text);
  expect(found, text).toHaveLength(1);
  return found[0]!;
};
const feed = (c: OutputConstraint, text: string): void => ids(text).forEach((id) => c.accept(id));

describe('an output that begins inside reasoning', () => {
  it('is free until </think>, then JSON: what Qwen writes after the tag is masked as JSON text', () => {
    const c = gate(INSIDE);
    expect(c.mask()).toBeNull();
    // anything goes while reasoning, tags of other kinds included
    feed(c, 'The user wants JSON. <tool_call> is not needed here; {"half": ');
    expect(c.mask()).toBeNull();
    c.accept(THINK_END);
    expect(c.mask()).not.toBeNull();
    expect(allows(c, single('{'))).toBe(true);
    expect(allows(c, single('Hello'))).toBe(false);
    expect(allows(c, IM_END)).toBe(false);
    feed(c, '{"a": 1}');
    expect(allows(c, IM_END)).toBe(true);
    c.accept(IM_END);
  });

  it('finds an end tag spelled out over several tokens, and takes the answer text after it in the same token', () => {
    const c = gate(INSIDE);
    feed(c, 'thinking');
    for (const piece of ['</', 'think', '>{']) c.accept(single(piece));
    // the '{' that came with the tag's last byte opened the object
    expect(allows(c, single('"'))).toBe(true);
    expect(allows(c, single('{'))).toBe(false);
  });

  it("leaves whitespace between the tag and the answer in the same token out of the format's view", () => {
    const c = gate(INSIDE);
    for (const piece of ['</', 'think', '>\n\n']) c.accept(single(piece));
    expect(allows(c, single('{'))).toBe(true);
  });

  it('lets the model end inside its reasoning (EOS is free there)', () => {
    const c = gate(INSIDE);
    feed(c, 'still thinking');
    expect(allows(c, IM_END)).toBe(true);
    expect(() => c.accept(IM_END)).not.toThrow();
  });
});

describe('an output that may open reasoning (Qwen3 writing <think> itself)', () => {
  it('allows <think> or the answer at first; <think> leads into free reasoning, then JSON', () => {
    const c = gate(MAY_OPEN);
    expect(allows(c, THINK)).toBe(true);
    expect(allows(c, single('{'))).toBe(true);
    expect(allows(c, single('<'))).toBe(true);
    expect(allows(c, single('Hello'))).toBe(false);
    expect(allows(c, THINK_END)).toBe(false);
    c.accept(THINK);
    expect(c.mask()).toBeNull();
    feed(c, '\nLet me think.\n');
    c.accept(THINK_END);
    expect(allows(c, single('{'))).toBe(true);
    expect(allows(c, single('Let'))).toBe(false);
  });

  it('an answer that begins at once is the answer: <think> is no longer allowed', () => {
    const c = gate(MAY_OPEN);
    c.accept(single('{'));
    expect(allows(c, THINK)).toBe(false);
    expect(allows(c, single('"'))).toBe(true);
  });

  it('the start tag spelled out byte by byte opens reasoning too', () => {
    const c = gate(MAY_OPEN);
    c.accept(single('<'));
    expect(allows(c, single('think'))).toBe(true);
    expect(allows(c, single('{'))).toBe(false);
    for (const piece of ['think', '>']) c.accept(single(piece));
    expect(c.mask()).toBeNull();
  });

  it('a tool call format sharing the tag\'s first byte: "<" keeps both open, and the call starts afresh after the reasoning', () => {
    const c = gate(MAY_OPEN, REQUIRED_CALL);
    expect(allows(c, TOOL_CALL) && allows(c, THINK)).toBe(true);
    c.accept(single('<'));
    // "think" continues the tag, "tool" the call
    expect(allows(c, single('think')) && allows(c, single('tool'))).toBe(true);
    for (const piece of ['think', '>']) c.accept(single(piece));
    expect(c.mask()).toBeNull();
    feed(c, 'I will call get_time.');
    c.accept(THINK_END);
    // the call's grammar from its start, not from after the '<' it saw while the tag was open
    expect(allows(c, TOOL_CALL)).toBe(true);
    expect(allows(c, single('tool'))).toBe(false);
    feed(c, '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>');
    expect(allows(c, IM_END)).toBe(true);
  });

  it('a token that fits neither the tag nor the answer is refused', () => {
    const c = gate(MAY_OPEN);
    expect(() => c.accept(single('Hello'))).toThrow(/neither opens the reasoning nor begins the answer/);
  });
});

describe('fork (speculative decoding looks ahead along drafts on a copy)', () => {
  it('a fork walks on alone: the gate it came from keeps its phase, its answer state and its mask', () => {
    const c = gate(MAY_OPEN);
    feed(c, '<th');
    const before = c.mask();
    const ahead = c.fork();
    // the copy finishes the tag, reasons, closes and writes JSON; the original stays mid-tag
    feed(ahead, 'ink>Plan it.');
    expect(ahead.mask()).toBeNull();
    ahead.accept(THINK_END);
    feed(ahead, '{"a": ');
    expect(allows(ahead, single('{'))).toBe(true);
    expect(allows(ahead, IM_END)).toBe(false);
    expect(c.mask()).toEqual(before);
    expect(allows(c, IM_END)).toBe(false);
    // and the original, moved the same way, reaches the same place as the fork did
    feed(c, 'ink>Plan it.');
    c.accept(THINK_END);
    feed(c, '{"a": ');
    expect(c.mask()).toEqual(ahead.mask());
  });

  it('a fork of a plain format (no reasoning) is independent too', () => {
    const c = constraints.constraintAfter(constraints.compile(JSON_OBJECT)!, undefined);
    feed(c, '{"k": ');
    const ahead = c.fork();
    feed(ahead, '1}');
    expect(allows(ahead, IM_END)).toBe(true);
    expect(allows(c, IM_END)).toBe(false);
    expect(allows(c, single('1'))).toBe(true);
  });
});
