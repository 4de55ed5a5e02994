/**
 * The JSON automaton (src/engine/constraints/: grammar, automaton, json-rules) against a
 * recursive-descent reference (test/reference/json-prefix.ts): it accepts every text of a
 * seeded random corpus, whole or cut anywhere, and refuses broken texts at exactly the byte
 * where the reference does.
 */
import { describe, expect, it } from 'vitest';
import { GrammarAutomaton, REJECTED, type AutomatonState } from '../../../src/engine/constraints/automaton.js';
import { MAX_INDENT } from '../../../src/engine/constraints/json-rules.js';
import { compileJsonSchema } from '../../../src/engine/constraints/json-schema.js';
import { jsonObjectGrammar } from '../../../src/engine/constraints/response-format.js';
import { Rng } from '../../helpers/random.js';
import { randomJson, randomObject, writeJson } from '../../helpers/random-json.js';
import { checkJsonPrefix, type PrefixVerdict } from '../../reference/json-prefix.js';

const enc = new TextEncoder();
const anyValue = new GrammarAutomaton(compileJsonSchema(true));
const objectOnly = new GrammarAutomaton(jsonObjectGrammar());

/** What the automaton says of a byte string, in the reference's terms. */
function run(automaton: GrammarAutomaton, bytes: Uint8Array): PrefixVerdict {
  let state: AutomatonState = automaton.initial();
  for (let i = 0; i < bytes.length; i++) {
    state = automaton.advance(state, bytes[i]!);
    if (state === REJECTED || state.length === 0) return { status: 'rejected', at: i };
  }
  return automaton.isComplete(state) ? { status: 'complete' } : { status: 'incomplete' };
}

const reference = (bytes: Uint8Array, topLevelObject = false): PrefixVerdict =>
  checkJsonPrefix(bytes, { maxIndent: MAX_INDENT, topLevelObject });

describe('JSON automaton', () => {
  it('accepts every text of a random corpus, and every prefix of one as incomplete', () => {
    const rng = new Rng(2024);
    for (let n = 0; n < 400; n++) {
      const value = randomJson(rng, 4);
      const texts = [JSON.stringify(value), JSON.stringify(value, null, 2), writeJson(rng, value, MAX_INDENT)];
      for (const text of texts) {
        expect(JSON.parse(text)).toEqual(value);
        const bytes = enc.encode(text);
        expect(run(anyValue, bytes), text).toEqual({ status: 'complete' });
        const cut = rng.int(bytes.length);
        expect(run(anyValue, bytes.subarray(0, cut))).toEqual(reference(bytes.subarray(0, cut)));
      }
    }
  });

  it('json_object mode: objects are accepted, any other top-level value is refused at its first byte', () => {
    const rng = new Rng(7);
    for (let n = 0; n < 200; n++) {
      const text = writeJson(rng, randomObject(rng), MAX_INDENT);
      expect(run(objectOnly, enc.encode(text)), text).toEqual({ status: 'complete' });
    }
    for (const [text, at] of [
      ['[]', 0],
      ['"x"', 0],
      ['1', 0],
      ['true', 0],
      ['null', 0],
      [' [', 1],
    ] as const) {
      const bytes = enc.encode(text);
      expect(run(objectOnly, bytes)).toEqual({ status: 'rejected', at });
      expect(reference(bytes, true)).toEqual({ status: 'rejected', at });
    }
  });

  it('refuses randomly broken texts at the same byte as the reference', () => {
    const rng = new Rng(99);
    const interesting = [...'{}[]:,"\\ \n0123456789.eE+-tfnu']
      .map((c) => c.charCodeAt(0))
      .concat([0x00, 0x1f, 0x7f, 0x80, 0xc0, 0xc3, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xff]);
    let rejected = 0;
    for (let n = 0; n < 1500; n++) {
      const bytes = [...enc.encode(writeJson(rng, randomJson(rng, 3), 3))];
      const at = rng.int(bytes.length + 1);
      const b = interesting[rng.int(interesting.length)]!;
      const op = rng.int(3);
      if (op === 0) bytes.splice(at, 0, b);
      else if (op === 1) bytes.splice(at, 1);
      else bytes[Math.min(at, bytes.length - 1)] = b;
      const broken = Uint8Array.from(bytes);
      const want = reference(broken);
      expect(run(anyValue, broken), new TextDecoder().decode(broken)).toEqual(want);
      if (want.status === 'rejected') rejected++;
    }
    // most mutations break the text: the comparison is not only of accepted ones
    expect(rejected).toBeGreaterThan(700);
  });

  it.each([
    ['{"a":01}', 6],
    ['[1,]', 3],
    ['{"a" 1}', 5],
    ['{,}', 1],
    ['"\\x"', 2],
    ['"\\u12g4"', 5],
    ['"a\tb"', 2],
    ['tru ', 3],
    ['1.e5', 2],
    ['-a', 1],
    ['01', 1],
    ['{"a":1}}', 7],
    ['{"a":1} ', 7],
    ['"\xc0\x80"', 1],
    ['"\xed\xa0\x80"', 2],
    ['"\xf4\x90\x80\x80"', 2],
    ['"\xf5"', 1],
    ['"\xe2\x82"', 3],
  ])('%j is refused at byte %i', (text, at) => {
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    expect(reference(bytes)).toEqual({ status: 'rejected', at });
    expect(run(anyValue, bytes)).toEqual({ status: 'rejected', at });
  });

  it.each([
    ['12', 'complete'],
    ['-0.5e+3', 'complete'],
    ['"\xf0\x9f\x98\x80"', 'complete'],
    ['[1, "a", {"b": null}]', 'complete'],
    ['{"a": [1', 'incomplete'],
    ['"\xf0\x9f', 'incomplete'],
    ['-', 'incomplete'],
    ['1e', 'incomplete'],
  ])('%j is %s', (text, status) => {
    expect(
      run(
        anyValue,
        Uint8Array.from(text, (c) => c.charCodeAt(0)),
      ),
    ).toEqual({ status });
  });

  it(`allows one space, or a newline and up to ${MAX_INDENT} spaces or tabs, between tokens; nothing more`, () => {
    const indent = '\n' + ' \t'.repeat(MAX_INDENT).slice(0, MAX_INDENT);
    expect(run(anyValue, enc.encode(`${indent}[ 1${indent},\n2 ]`))).toEqual({ status: 'complete' });
    for (const [text, at] of [
      [`[1,${indent} 2]`, 3 + 1 + MAX_INDENT],
      ['[1,  2]', 4],
      ['[1,\n\n2]', 4],
      ['[1,\t2]', 3],
      ['[1,\r\n2]', 3],
      [' \n[]', 1],
    ] as const) {
      const bytes = enc.encode(text);
      expect(run(anyValue, bytes), JSON.stringify(text)).toEqual({ status: 'rejected', at });
      expect(reference(bytes)).toEqual({ status: 'rejected', at });
    }
  });
});
