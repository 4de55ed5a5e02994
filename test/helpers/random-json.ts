/**
 * Seeded random JSON for the constrained-decoding tests: values (nested objects and
 * arrays, strings with escapes and every UTF-8 length, numbers in every RFC 8259 form), and
 * texts of them written compactly, pretty-printed, or with random whitespace and escapes
 * (JSON.stringify writes only one of the many texts of a value).
 */
import { Rng } from './random.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const CHARS = ['a', 'Z', ' ', '0', '"', '\\', '/', '\n', '\t', '\u0001', 'é', 'ß', '€', '中', '😀', '\u007f', '\u2028'];

export function randomString(rng: Rng, maxLength = 8): string {
  let s = '';
  const n = rng.int(maxLength + 1);
  for (let i = 0; i < n; i++) s += CHARS[rng.int(CHARS.length)]!;
  return s;
}

export function randomNumber(rng: Rng): number {
  switch (rng.int(5)) {
    case 0:
      return rng.int(10);
    case 1:
      return -rng.int(100000);
    case 2:
      return Number(rng.uniform(-1000, 1000).toFixed(rng.int(6)));
    case 3:
      return rng.uniform(-1, 1) * 10 ** (rng.int(60) - 30);
    default:
      return 0;
  }
}

export function randomJson(rng: Rng, depth = 3): Json {
  const kind = rng.int(depth > 0 ? 7 : 5);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return rng.next() < 0.5;
    case 2:
      return randomNumber(rng);
    case 3:
    case 4:
      return randomString(rng);
    case 5:
      return Array.from({ length: rng.int(4) }, () => randomJson(rng, depth - 1));
    default: {
      const o: Record<string, Json> = {};
      for (let i = rng.int(4); i > 0; i--) o[randomString(rng, 4)] = randomJson(rng, depth - 1);
      return o;
    }
  }
}

/** A random object (json_object mode's top level). */
export function randomObject(rng: Rng, depth = 3): Record<string, Json> {
  const o: Record<string, Json> = {};
  for (let i = rng.int(5); i > 0; i--) o[randomString(rng, 4)] = randomJson(rng, depth - 1);
  return o;
}

/** Whitespace the constraint allows between tokens: none, one space, or a newline and up to maxIndent spaces or tabs. */
function randomWs(rng: Rng, maxIndent: number): string {
  if (rng.next() < 0.5) return ' ';
  let s = '\n';
  for (let i = rng.int(maxIndent + 1); i > 0; i--) s += rng.next() < 0.8 ? ' ' : '\t';
  return s;
}

/** A string literal with some characters escaped (\uXXXX, short escapes) where JSON.stringify would not. */
function writeString(rng: Rng, s: string): string {
  let out = '"';
  for (const c of s) {
    const code = c.codePointAt(0)!;
    const short: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\t': '\\t', '\b': '\\b', '\f': '\\f', '\r': '\\r' };
    if (short[c]) out += short[c];
    else if (code < 0x20 || rng.next() < 0.1) {
      out += code > 0xffff ? escapeUtf16(c) : `\\u${code.toString(16).padStart(4, '0')}`;
    } else if (c === '/' && rng.next() < 0.5) out += '\\/';
    else out += c;
  }
  return `${out}"`;
}

function escapeUtf16(c: string): string {
  let out = '';
  for (let i = 0; i < c.length; i++) out += `\\u${c.charCodeAt(i).toString(16).toUpperCase().padStart(4, '0')}`;
  return out;
}

/** A text of `value` with random whitespace (indents of up to maxIndent) and escapes. */
export function writeJson(rng: Rng, value: Json, maxIndent: number): string {
  const ws = (): string => (rng.next() < 0.3 ? randomWs(rng, maxIndent) : '');
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    const plain = JSON.stringify(value);
    return rng.next() < 0.2 && !/[.e]/.test(plain) ? `${plain}E+0` : plain;
  }
  if (typeof value === 'string') return writeString(rng, value);
  if (Array.isArray(value)) return `[${ws()}${value.map((v) => writeJson(rng, v, maxIndent) + ws()).join(`,${ws()}`)}]`;
  const parts = Object.entries(value).map(([k, v]) => `${writeString(rng, k)}${ws()}:${ws()}${writeJson(rng, v, maxIndent)}${ws()}`);
  return `{${ws()}${parts.join(`,${ws()}`)}}`;
}
