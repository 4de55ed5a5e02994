/**
 * Reasoning parsing on its own: the splitter (whole outputs, the same outputs cut at every
 * point and into every character, and the property a resumed stream relies on: what has
 * come out after a prefix does not depend on how the prefix was split), where the output
 * begins as the prompt says, which parser a chat template calls for, and the count of
 * reasoning tokens.
 */
import { describe, expect, test } from 'vitest';
import { ReasoningSplitter } from '../../src/server/reasoning/reasoning-splitter.js';
import { ReasoningTokenCounter } from '../../src/server/reasoning/reasoning-tokens.js';
import { detectReasoningParser, outputOpening } from '../../src/server/reasoning/template-reasoning.js';
import type { OutputOpening, ReasoningDelta } from '../../src/server/reasoning/types.js';

function read(opening: OutputOpening, pieces: string[]): ReasoningDelta & { span: ReasoningSplitter['reasoningSpan'] } {
  const s = new ReasoningSplitter(opening);
  const out = { reasoning: '', content: '' };
  for (const p of [...pieces.map((piece) => s.push(piece)), s.end()]) {
    out.reasoning += p.reasoning;
    out.content += p.content;
  }
  return { ...out, span: s.reasoningSpan };
}

/** Every cut into two pieces, and one character at a time. */
function splits(text: string): string[][] {
  const out = [[...text]];
  for (let at = 0; at <= text.length; at++) out.push([text.slice(0, at), text.slice(at)]);
  return out;
}

describe('the splitter', () => {
  const cases: [string, OutputOpening, string, string, string][] = [
    [
      'reasoning, then the answer (what follows the tag kept as written)',
      'reasoning',
      'Let me think.\n</think>\n\nIt is 4.',
      'Let me think.\n',
      '\n\nIt is 4.',
    ],
    [
      'no end tag before the output ends: all reasoning, a partial tag included',
      'reasoning',
      'Still <tool_call> thinking </thi',
      'Still <tool_call> thinking </thi',
      '',
    ],
    ['a <think> the model repeats at the start is dropped', 'reasoning', '<think>\nhmm</think>ok', '\nhmm', 'ok'],
    ['only the first end tag ends the reasoning', 'reasoning', 'a</think>b</think>c', 'a', 'b</think>c'],
    ['an empty reasoning and no answer', 'reasoning', '</think>', '', ''],
    ['a <think> not at the start is reasoning text', 'reasoning', 'x<think>y</think>z', 'x<think>y', 'z'],
    ['Qwen3 writing <think> itself', 'may-open', '<think>\nplan\n</think>\n\nanswer', '\nplan\n', '\n\nanswer'],
    [
      'no <think> at the start: all content, tags in it too',
      'may-open',
      'Plain <think> and </think> text',
      '',
      'Plain <think> and </think> text',
    ],
    ['a tag begun and cut off: content', 'may-open', '<thin', '', '<thin'],
    ['a tag-like start that is not the tag: content', 'may-open', '<b>bold</b>', '', '<b>bold</b>'],
    ['whitespace before <think>: content (the tag must come first)', 'may-open', '\n<think>x</think>y', '', '\n<think>x</think>y'],
    ['<think> opened and never closed: reasoning', 'may-open', '<think>cut by max_tokens', 'cut by max_tokens', ''],
    ['thinking off (the prompt closed it): all content', 'content', '<think>x</think>y', '', '<think>x</think>y'],
  ];

  test.each(cases)('%s', (_name, opening, text, reasoning, content) => {
    for (const pieces of splits(text)) {
      const got = read(opening, pieces);
      expect([got.reasoning, got.content], JSON.stringify(pieces)).toEqual([reasoning, content]);
    }
  });

  test('what has come out after a prefix does not depend on how it was split', () => {
    for (const [, opening, text] of cases) {
      for (let end = 0; end <= text.length; end++) {
        const prefix = text.slice(0, end);
        const whole = new ReasoningSplitter(opening).push(prefix);
        for (const pieces of splits(prefix)) {
          const s = new ReasoningSplitter(opening);
          const got = { reasoning: '', content: '' };
          for (const p of pieces) {
            const d = s.push(p);
            got.reasoning += d.reasoning;
            got.content += d.content;
          }
          expect(got, `${JSON.stringify(text)} cut ${JSON.stringify(pieces)}`).toEqual(whole);
        }
      }
    }
  });

  test('no part of a tag is returned while it may still be one', () => {
    const s = new ReasoningSplitter('reasoning');
    expect(s.push('abc</th')).toEqual({ reasoning: 'abc', content: '' });
    expect(s.push('ink>')).toEqual({ reasoning: '', content: '' });
    const opening = new ReasoningSplitter('may-open');
    expect(opening.push('<thi')).toEqual({ reasoning: '', content: '' });
    expect(opening.push('nk>a')).toEqual({ reasoning: 'a', content: '' });
  });

  test('the reasoning span: offsets of its text in the output, tags left out; open while unclosed', () => {
    expect(read('reasoning', ['abc</think>de']).span).toEqual({ from: 0, to: 3 });
    expect(read('may-open', ['<think>ab</think>c']).span).toEqual({ from: 7, to: 9 });
    expect(read('may-open', ['answer']).span).toBeNull();
    expect(read('content', ['<think>a</think>']).span).toBeNull();
    const open = new ReasoningSplitter('reasoning');
    open.push('abc');
    expect(open.reasoningSpan).toEqual({ from: 0, to: null });
    open.end();
    expect(open.reasoningSpan).toEqual({ from: 0, to: 3 });
  });
});

describe('where the output begins, from the end of the prompt', () => {
  test.each([
    ['<|im_start|>assistant\n<think>\n', 'qwen3', 'reasoning'],
    ['<｜Assistant｜><think>\n', 'deepseek_r1', 'reasoning'],
    ['<|im_start|>assistant\n<think>\n\n</think>\n\n', 'qwen3', 'content'],
    ['<|im_start|>assistant\n<think>\n\n</think>\n\n', 'deepseek_r1', 'content'],
    ['<|im_start|>assistant\n', 'qwen3', 'may-open'],
    ['<｜Assistant｜>', 'deepseek_r1', 'reasoning'],
    // a past turn's closed reasoning is not this turn's
    ['<think>a</think>b<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n', 'qwen3', 'may-open'],
  ] as const)('%j with %s: %s', (tail, parser, opening) => {
    expect(outputOpening(tail, parser)).toBe(opening);
  });
});

describe('the parser a chat template calls for', () => {
  test('one that writes <think>: qwen3, or deepseek_r1 for DeepSeek markers; others none', () => {
    expect(detectReasoningParser('{%- if enable_thinking is false %}<think>\n\n</think>\n\n{%- endif %}')).toBe('qwen3');
    expect(detectReasoningParser("{{'<｜Assistant｜><think>\\n'}}")).toBe('deepseek_r1');
    expect(detectReasoningParser('{{ messages }}<|im_start|>assistant\n')).toBeNull();
    expect(detectReasoningParser(null)).toBeNull();
  });
});

describe('reasoning tokens', () => {
  // a toy detokenizer: each id writes its own text
  const TEXT = ['<think>', 'Let', ' me', ' think', '</think>', 'Hi', '!', '</', 'think', '>'];
  const textOf = async (ids: readonly number[]): Promise<string> => ids.map((id) => TEXT[id]).join('');
  const counted = async (opening: OutputOpening, pieces: number[][]): Promise<number> => {
    const s = new ReasoningSplitter(opening);
    const counter = new ReasoningTokenCounter();
    for (const ids of pieces) {
      const text = await textOf(ids);
      counter.add(text, ids);
      s.push(text);
    }
    s.end();
    return counter.count(s.reasoningSpan!, textOf);
  };

  test('the tokens between the tags, one piece each or replayed in one piece, tags split or whole', async () => {
    // Let me think </think> Hi !: 3 reasoning tokens
    expect(await counted('reasoning', [[1], [2], [3], [4], [5], [6]])).toBe(3);
    expect(await counted('may-open', [[0], [1], [2], [3], [4], [5]])).toBe(3);
    // a resumed stream's earlier tokens arrive as one piece: the boundary inside it is found by bisection
    expect(await counted('reasoning', [[1, 2, 3, 4, 5], [6]])).toBe(3);
    expect(await counted('may-open', [[0, 1, 2, 3, 4, 5, 6]])).toBe(3);
    // an end tag spelled in three tokens is no part of the reasoning
    expect(await counted('reasoning', [[1], [2], [7], [8], [9], [5]])).toBe(2);
    expect(await counted('reasoning', [[1, 2, 7, 8, 9, 5]])).toBe(2);
    // never closed: every token
    expect(await counted('reasoning', [[1], [2], [3]])).toBe(3);
  });
});
