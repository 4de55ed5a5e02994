/**
 * Regex and choice constraints (src/engine/constraints/regex.ts, regex-syntax.ts) walked
 * byte by byte through their automaton, against JavaScript's own RegExp anchored at both
 * ends: strings of a small alphabet agree with it, whole or cut, and random walks of the
 * automaton (any byte it allows, EOS where it is complete) only ever write well-formed
 * UTF-8 that the RegExp matches. Refusals name the parameter and the construct.
 */
import { describe, expect, it } from 'vitest';
import { GrammarAutomaton, REJECTED, type AutomatonState } from '../../../src/engine/constraints/automaton.js';
import { compileChoices, compileRegex } from '../../../src/engine/constraints/regex.js';
import { utf8Sequences } from '../../../src/engine/constraints/regex-syntax.js';
import { isAutoGlmError } from '../../../src/errors.js';
import { Rng } from '../../helpers/random.js';

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

type Verdict = 'complete' | 'incomplete' | 'rejected';

function run(automaton: GrammarAutomaton, text: string | Uint8Array): Verdict {
  const bytes = typeof text === 'string' ? enc.encode(text) : text;
  let state: AutomatonState = automaton.initial();
  for (const b of bytes) {
    state = automaton.advance(state, b);
    if (state === REJECTED || state.length === 0) return 'rejected';
  }
  return automaton.isComplete(state) ? 'complete' : 'incomplete';
}

/** A text the automaton allows, byte by byte, ending where it may (or must) end. */
function randomWalk(automaton: GrammarAutomaton, rng: Rng, maxBytes = 60): { bytes: Uint8Array; complete: boolean } {
  let state = automaton.initial();
  const out: number[] = [];
  for (;;) {
    const complete = automaton.isComplete(state);
    const next = [...Array(256).keys()].filter((b) => automaton.advance(state, b).length > 0);
    // a state that allows nothing is complete: dead ends are pruned from grammars
    if (next.length === 0) {
      expect(complete).toBe(true);
      return { bytes: Uint8Array.from(out), complete };
    }
    if ((complete && rng.int(4) === 0) || out.length >= maxBytes) return { bytes: Uint8Array.from(out), complete };
    const b = next[rng.int(next.length)]!;
    out.push(b);
    state = automaton.advance(state, b);
  }
}

/** The pattern as JavaScript reads it, anchored; `.` is written [^\n], since JavaScript's also leaves out \r, U+2028 and U+2029. */
function jsRegExp(pattern: string): RegExp {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') out += c + pattern[++i]!;
    else if (c === '.' && !inClass) out += '[^\\n]';
    else {
      if (c === '[') inClass = true;
      else if (c === ']') inClass = false;
      out += c;
    }
  }
  return new RegExp(`^(?:${out})$`, 'u');
}

function refusal(run: () => unknown): { message: string; param: string | undefined } {
  try {
    run();
  } catch (e) {
    if (isAutoGlmError(e)) return { message: e.message, param: e.param };
    throw e;
  }
  throw new Error('no refusal');
}

const PATTERNS = [
  'abc',
  '[a-c]+x?',
  '(ab|a)(bc|c)*',
  '\\d{3}-\\d{2,4}',
  '(?:x|yz){2,}',
  '[^a]{0,3}b',
  '\\w+@\\w+\\.(com|org)',
  'a{0}b',
  '(a|)b*',
  '(a*)*b',
  '(a?){3}c',
  '\\s?\\S\\D\\W',
  '[\\d_-]+',
  '[.]\\.\\\\\\/',
  '(yes|no|maybe)',
  '\\x41\\u00e9\\u{1F600}',
  'é+|ñ',
  '.{1,3}',
  '[^"\\\\]*',
  '',
];

describe('regex constraint', () => {
  it('agrees with an anchored RegExp on every string of a small alphabet, whole and cut', () => {
    const alphabet = ['a', 'b', 'c', 'x', 'y', 'z', '1', '-', '@', '.', '_', ' ', 'é', '😀', '\n', '"', 'A', '/', '\\'];
    const rng = new Rng(11);
    for (const pattern of PATTERNS) {
      const automaton = new GrammarAutomaton(compileRegex(pattern));
      const re = jsRegExp(pattern);
      for (let n = 0; n < 600; n++) {
        const length = rng.int(8);
        const text = Array.from({ length }, () => alphabet[rng.int(alphabet.length)]!).join('');
        const v = run(automaton, text);
        expect(v === 'complete', `${pattern} on ${JSON.stringify(text)}`).toBe(re.test(text));
      }
    }
  });

  it('random walks of the automaton write well-formed UTF-8 that the RegExp matches whenever they end complete', () => {
    const rng = new Rng(5);
    for (const pattern of PATTERNS) {
      const automaton = new GrammarAutomaton(compileRegex(pattern));
      const re = jsRegExp(pattern);
      let complete = 0;
      for (let n = 0; n < 60; n++) {
        const walk = randomWalk(automaton, rng);
        if (!walk.complete) continue;
        complete++;
        const text = dec.decode(walk.bytes);
        expect(re.test(text), `${pattern} wrote ${JSON.stringify(text)}`).toBe(true);
      }
      expect(complete, pattern).toBeGreaterThan(0);
    }
  });

  it('accepts and refuses the strings it should, byte by byte', () => {
    const cases: [string, string[], string[]][] = [
      ['\\d{3}-\\d{4}', ['555-1234'], ['555-123', '5551234', '555-12345', 'abc-defg']],
      ['^(cat|dog)s?$', ['cat', 'dogs'], ['cats!', 'catdog', '']],
      ['[^\\n]*;', ['a;', ';', 'é 😀;'], ['a\n;', 'a']],
      ['\\\\n\\t', ['\\n\t'], ['\n\t']],
      ['a{2,3}?', ['aa', 'aaa'], ['a', 'aaaa']],
      ['x{,2}', ['', 'x', 'xx'], ['xxx']],
      ['a{b', ['a{b'], ['ab']],
      ['[]a]', [']', 'a'], ['b']],
      ['[\\b]', ['\b'], ['b']],
      ['\\Aab\\Z', ['ab'], ['a']],
    ];
    for (const [pattern, yes, no] of cases) {
      const automaton = new GrammarAutomaton(compileRegex(pattern));
      for (const s of yes) expect(run(automaton, s), `${pattern} on ${JSON.stringify(s)}`).toBe('complete');
      for (const s of no) expect(run(automaton, s), `${pattern} on ${JSON.stringify(s)}`).not.toBe('complete');
    }
    // a cut string is incomplete, not rejected; a wrong byte is rejected where it comes
    const phone = new GrammarAutomaton(compileRegex('\\d{3}-\\d{4}'));
    expect(run(phone, '555-')).toBe('incomplete');
    expect(run(phone, '55a')).toBe('rejected');
  });

  it('. and negated classes take any well-formed UTF-8 character, surrogates and broken sequences not', () => {
    const dot = new GrammarAutomaton(compileRegex('.'));
    for (const s of ['a', 'é', '€', '😀', '\u{10FFFF}', '\r']) expect(run(dot, s), s).toBe('complete');
    expect(run(dot, '\n')).toBe('rejected');
    for (const bad of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xe0, 0x80, 0x80]])
      expect(run(dot, Uint8Array.from(bad)), String(bad)).toBe('rejected');
    const notQuote = new GrammarAutomaton(compileRegex('[^"]'));
    expect(run(notQuote, '"')).toBe('rejected');
    expect(run(notQuote, '\n')).toBe('complete');
    expect(run(notQuote, '😀')).toBe('complete');
  });

  it('utf8Sequences covers every code point of a range exactly, as well-formed UTF-8', () => {
    const rng = new Rng(3);
    for (let n = 0; n < 200; n++) {
      const a = rng.int(0x110000);
      const b = Math.min(0x10ffff, a + rng.int(n % 2 ? 300 : 0x20000));
      const seqs = utf8Sequences(a, b);
      const matches = (cp: number): number =>
        seqs.filter((seq) => {
          const bytes = enc.encode(String.fromCodePoint(cp));
          return bytes.length === seq.length && seq.every(([lo, hi], i) => bytes[i]! >= lo && bytes[i]! <= hi);
        }).length;
      for (const cp of [a, b, a + ((b - a) >> 1), a - 1, b + 1]) {
        if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) continue;
        expect(matches(cp), `U+${cp.toString(16)} in ${a.toString(16)}..${b.toString(16)}`).toBe(cp >= a && cp <= b ? 1 : 0);
      }
    }
  });

  it('the automaton is deterministic: one stack at every step', () => {
    const automaton = new GrammarAutomaton(compileRegex('(a|ab)(c|bcd)(d*)'));
    let state = automaton.initial();
    for (const b of enc.encode('abcdddd')) {
      state = automaton.advance(state, b);
      expect(state.length).toBe(1);
    }
    expect(automaton.isComplete(state)).toBe(true);
  });

  it('a complete match that cannot grow allows no byte at all (only EOS)', () => {
    const automaton = new GrammarAutomaton(compileRegex('ab'));
    const state = automaton.advanceBytes(automaton.initial(), enc.encode('ab'));
    expect(automaton.isComplete(state)).toBe(true);
    for (let b = 0; b < 256; b++) expect(automaton.advance(state, b)).toBe(REJECTED);
  });

  it('refuses what it cannot enforce, naming the parameter and the construct', () => {
    const refused: [string, RegExp][] = [
      ['(a)\\1', /backreference \\1/],
      ['(?P<x>a)(?P=x)', /named group/],
      ['(?P=x)', /named backreference/],
      ['a(?=b)', /lookahead/],
      ['a(?!b)', /negative lookahead/],
      ['(?<=a)b', /lookbehind/],
      ['(?<!a)b', /negative lookbehind/],
      ['(?<name>a)', /named group/],
      ['\\bword\\b', /word boundary \\b/],
      ['\\p{L}+', /Unicode property escape \\p/],
      ['(?i)abc', /inline flags/],
      ['a*+', /possessive/],
      ['(?>a)', /atomic group/],
      ['a^b', /'\^' other than at the start/],
      ['a$b', /'\$' other than at the end/],
      ['a{1001}', /repeat count above 1000/],
      ['a{2,5000}', /repeat count above 1000/],
      ['[[:alpha:]]', /POSIX class/],
    ];
    for (const [pattern, construct] of refused) {
      const e = refusal(() => compileRegex(pattern, { param: 'guided_regex' }));
      expect(e.param, pattern).toBe('guided_regex');
      expect(e.message, pattern).toMatch(/^guided_regex: /);
      expect(e.message, pattern).toMatch(construct);
    }
    const invalid = ['(ab', 'ab)', '*a', 'a**', '[abc', '[z-a]', 'a{3,2}', '\\', '\\q', '\\xZZ'];
    for (const pattern of invalid) {
      const e = refusal(() => compileRegex(pattern));
      expect(e.param, pattern).toBe('response_format');
      expect(e.message, pattern).toMatch(/invalid regex/);
    }
  });

  it('refuses patterns that match nothing', () => {
    for (const pattern of ['[^\\x00-\\x{10FFFF}]', '[\\uD800-\\uDFFF]', 'a[^\\s\\S]b', '(x[^\\d\\D])+']) {
      const e = refusal(() => compileRegex(pattern, { param: 'structured_outputs.regex' }));
      expect(e.param).toBe('structured_outputs.regex');
      expect(e.message, pattern).toMatch(/matches no text/);
    }
  });

  it('refuses a pattern whose repeats expand past the node limit, quickly', () => {
    const started = performance.now();
    // NFA too large; DFA too large; DFA states that are each large sets (ambiguous repeats)
    for (const pattern of [
      '(a{1000}){1000}',
      '((a|b){1000}){1000}',
      '[ab]*a[ab]{999}',
      '(.|\\n){0,1000}x(.|\\n){0,1000}',
      '(\\w+ ?){1,1000}',
    ]) {
      const e = refusal(() => compileRegex(pattern, { param: 'guided_regex' }));
      expect(e.param, pattern).toBe('guided_regex');
      expect(e.message, pattern).toMatch(/too (large|complex) for constrained decoding/);
    }
    // the same words written without ambiguity compile at once
    expect(compileRegex('\\w+( \\w+){0,999}').nodeCount).toBeLessThan(10_000);
    expect(performance.now() - started).toBeLessThan(30_000);
    // a large bound that is fine: a few states per count (one per place inside a UTF-8 sequence)
    expect(compileRegex('.{0,1000}').nodeCount).toBeLessThan(25_000);
  });
});

describe('choice constraint', () => {
  it('accepts exactly the choices, and a choice that is a prefix of another ends or goes on', () => {
    const choices = ['yes', 'yes please', 'no', 'é😀', '{"a": 1}'];
    const automaton = new GrammarAutomaton(compileChoices(choices));
    for (const c of choices) expect(run(automaton, c), c).toBe('complete');
    for (const s of ['ye', 'yes ', 'n', 'é']) expect(run(automaton, s), s).toBe('incomplete');
    for (const s of ['yess', 'noo', 'maybe', '']) expect(run(automaton, s), s).not.toBe('complete');
    const rng = new Rng(9);
    for (let n = 0; n < 100; n++) {
      const walk = randomWalk(automaton, rng);
      if (walk.complete) expect(choices).toContain(dec.decode(walk.bytes));
    }
  });

  it('regex metacharacters in a choice are literal', () => {
    const automaton = new GrammarAutomaton(compileChoices(['a.b', '(x|y)*']));
    expect(run(automaton, 'a.b')).toBe('complete');
    expect(run(automaton, 'acb')).toBe('rejected');
    expect(run(automaton, '(x|y)*')).toBe('complete');
    expect(run(automaton, 'x')).toBe('rejected');
  });
});
