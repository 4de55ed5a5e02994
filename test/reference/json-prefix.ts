/**
 * Reference for the JSON automaton (src/engine/constraints/): a plain recursive-descent
 * recognizer over bytes that says whether a byte string is a whole JSON text, a prefix of
 * one, or where the first byte is that no JSON text can have there. Same rules as the
 * automaton: RFC 8259, well-formed UTF-8 in strings (RFC 3629), whitespace between tokens
 * only as nothing, one space, or a newline and up to maxIndent spaces or tabs, nothing
 * after the value.
 */

export type PrefixVerdict = { status: 'complete' } | { status: 'incomplete' } | { status: 'rejected'; at: number };

class Incomplete extends Error {}
class Rejected extends Error {
  constructor(readonly at: number) {
    super(`rejected at ${at}`);
  }
}

export function checkJsonPrefix(bytes: Uint8Array, options: { maxIndent: number; topLevelObject?: boolean }): PrefixVerdict {
  let i = 0;
  const peek = (): number => {
    if (i >= bytes.length) throw new Incomplete();
    return bytes[i]!;
  };
  const expect = (b: number): void => {
    if (peek() !== b) throw new Rejected(i);
    i++;
  };
  const ws = (): void => {
    if (i < bytes.length && bytes[i] === 0x20) i++;
    else if (i < bytes.length && bytes[i] === 0x0a) {
      i++;
      for (let k = 0; i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x09); k++) {
        if (k === options.maxIndent) throw new Rejected(i);
        i++;
      }
    }
  };
  const digits = (atLeastOne: boolean): void => {
    if (atLeastOne && !(peek() >= 0x30 && peek() <= 0x39)) throw new Rejected(i);
    while (i < bytes.length && bytes[i]! >= 0x30 && bytes[i]! <= 0x39) i++;
  };
  const number = (): void => {
    if (peek() === 0x2d) i++;
    const first = peek();
    if (first === 0x30) i++;
    else if (first >= 0x31 && first <= 0x39) digits(true);
    else throw new Rejected(i);
    if (i < bytes.length && bytes[i] === 0x2e) {
      i++;
      digits(true);
    }
    if (i < bytes.length && (bytes[i] === 0x65 || bytes[i] === 0x45)) {
      i++;
      if (peek() === 0x2b || peek() === 0x2d) i++;
      digits(true);
    }
  };
  const continuation = (lo = 0x80, hi = 0xbf): void => {
    const b = peek();
    if (b < lo || b > hi) throw new Rejected(i);
    i++;
  };
  const string = (): void => {
    expect(0x22);
    for (;;) {
      const b = peek();
      if (b === 0x22) {
        i++;
        return;
      }
      if (b < 0x20) throw new Rejected(i);
      i++;
      if (b === 0x5c) {
        const e = peek();
        if ('"\\/bfnrt'.includes(String.fromCharCode(e))) i++;
        else if (e === 0x75) {
          i++;
          for (let k = 0; k < 4; k++) {
            if (!/[0-9a-fA-F]/.test(String.fromCharCode(peek()))) throw new Rejected(i);
            i++;
          }
        } else throw new Rejected(i);
      } else if (b >= 0x80) {
        if (b >= 0xc2 && b <= 0xdf) continuation();
        else if (b === 0xe0) (continuation(0xa0, 0xbf), continuation());
        else if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) (continuation(), continuation());
        else if (b === 0xed) (continuation(0x80, 0x9f), continuation());
        else if (b === 0xf0) (continuation(0x90, 0xbf), continuation(), continuation());
        else if (b >= 0xf1 && b <= 0xf3) (continuation(), continuation(), continuation());
        else if (b === 0xf4) (continuation(0x80, 0x8f), continuation(), continuation());
        else throw new Rejected(i - 1);
      }
    }
  };
  const literal = (text: string): void => {
    for (const c of text) expect(c.charCodeAt(0));
  };
  const object = (): void => {
    expect(0x7b);
    ws();
    if (peek() === 0x7d) return void i++;
    for (;;) {
      string();
      ws();
      expect(0x3a);
      ws();
      value();
      ws();
      if (peek() === 0x7d) return void i++;
      expect(0x2c);
      ws();
    }
  };
  const array = (): void => {
    expect(0x5b);
    ws();
    if (peek() === 0x5d) return void i++;
    for (;;) {
      value();
      ws();
      if (peek() === 0x5d) return void i++;
      expect(0x2c);
      ws();
    }
  };
  const value = (): void => {
    const b = peek();
    if (b === 0x7b) object();
    else if (b === 0x5b) array();
    else if (b === 0x22) string();
    else if (b === 0x74) literal('true');
    else if (b === 0x66) literal('false');
    else if (b === 0x6e) literal('null');
    else if (b === 0x2d || (b >= 0x30 && b <= 0x39)) number();
    else throw new Rejected(i);
  };
  try {
    ws();
    if (options.topLevelObject) object();
    else value();
    if (i < bytes.length) return { status: 'rejected', at: i };
    return { status: 'complete' };
  } catch (e) {
    if (e instanceof Incomplete) return { status: 'incomplete' };
    if (e instanceof Rejected) return { status: 'rejected', at: e.at };
    throw e;
  }
}
