/**
 * The regular expressions regex constraints accept (regex.ts compiles them), parsed into a
 * syntax tree of code point sets, concatenations, alternations and bounded repeats.
 *
 * Python's `re` syntax as vLLM's users write it, less everything that is not a regular
 * language or changes matching in ways a whole-text match cannot honour: backreferences,
 * lookarounds, word boundaries, named groups, Unicode property escapes, inline flags,
 * possessive quantifiers and atomic groups are refused, naming the construct, rather than
 * loosened. `^` / `\A` and `$` / `\Z` / `\z` are accepted at the very start and end only,
 * where they change nothing (the whole output always matches). Classes are ASCII as
 * xgrammar's are: \d is [0-9], \w is [A-Za-z0-9_], \s is [\t\n\v\f\r ]; `.` is any
 * character but '\n'.
 */
import { GrammarError } from './grammar.js';

/** Inclusive code point range. */
export type CodeRange = readonly [number, number];

export type RegexNode =
  | { kind: 'set'; ranges: readonly CodeRange[] }
  | { kind: 'concat'; items: readonly RegexNode[] }
  | { kind: 'alt'; items: readonly RegexNode[] }
  | { kind: 'repeat'; item: RegexNode; min: number; max: number };

/** Largest bound of a counted repeat ({n}, {n,}, {n,m}): larger ones make grammars too big to be worth it. */
export const MAX_REPEAT = 1000;
/** Deepest nesting of groups (the parser recurses on them). */
const MAX_GROUP_DEPTH = 200;

export const MAX_CODE_POINT = 0x10ffff;
export const ANY_CODE_POINT: readonly CodeRange[] = [[0, MAX_CODE_POINT]];
const DIGIT: readonly CodeRange[] = [[0x30, 0x39]];
const WORD: readonly CodeRange[] = [
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x5f, 0x5f],
  [0x61, 0x7a],
];
const SPACE: readonly CodeRange[] = [
  [0x09, 0x0d],
  [0x20, 0x20],
];
const NEWLINE = 0x0a;

const SIMPLE_ESCAPES: Readonly<Record<string, number>> = { n: 0x0a, t: 0x09, r: 0x0d, f: 0x0c, v: 0x0b, a: 0x07 };
const CLASS_ESCAPES: Readonly<Record<string, readonly CodeRange[]>> = {
  d: DIGIT,
  D: negate(DIGIT),
  w: WORD,
  W: negate(WORD),
  s: SPACE,
  S: negate(SPACE),
};
/** Escapes refused by name. */
const REFUSED_ESCAPES: Readonly<Record<string, string>> = {
  b: 'the word boundary \\b',
  B: 'the non-boundary \\B',
  G: 'the anchor \\G',
  k: 'the named backreference \\k',
  p: 'the Unicode property escape \\p',
  P: 'the Unicode property escape \\P',
  N: 'the named character escape \\N',
  c: 'the control escape \\c',
  X: 'the grapheme cluster \\X',
  R: 'the line break escape \\R',
  K: 'the match reset \\K',
};

/** Parses `pattern`; errors are invalid_request naming `param`. */
export function parseRegex(pattern: string, param: string): RegexNode {
  return new Parser(pattern, param).parse();
}

class Parser {
  private readonly cs: readonly string[];
  private i = 0;
  private depth = 0;

  constructor(
    pattern: string,
    private readonly param: string,
  ) {
    this.cs = Array.from(pattern);
  }

  parse(): RegexNode {
    if (this.cs[0] === '^') this.i = 1;
    else if (this.lookingAt('\\A')) this.i = 2;
    const node = this.alternation();
    if (this.i < this.cs.length) throw this.invalid(`unbalanced ')'`);
    return node;
  }

  private alternation(): RegexNode {
    const items = [this.concatenation()];
    while (this.peek() === '|') {
      this.i++;
      items.push(this.concatenation());
    }
    return items.length === 1 ? items[0]! : { kind: 'alt', items };
  }

  private concatenation(): RegexNode {
    const items: RegexNode[] = [];
    for (let c = this.peek(); c !== undefined && c !== '|' && c !== ')'; c = this.peek()) {
      if (this.atEndAnchor()) continue;
      items.push(this.quantified(this.atom()));
    }
    return items.length === 1 ? items[0]! : { kind: 'concat', items };
  }

  /** `$`, `\Z` or `\z` as the pattern's last characters: skipped (the match is always whole). */
  private atEndAnchor(): boolean {
    const rest = this.cs.length - this.i;
    const length = this.peek() === '$' ? 1 : this.lookingAt('\\Z') || this.lookingAt('\\z') ? 2 : 0;
    if (length === 0 || length !== rest) return false;
    this.i += length;
    return true;
  }

  private quantified(atom: RegexNode): RegexNode {
    const at = this.i;
    const bounds = this.quantifier();
    if (!bounds) return atom;
    // lazy and greedy match the same whole texts
    if (this.peek() === '?') this.i++;
    else if (this.peek() === '+') throw this.refuse('a possessive quantifier', this.i);
    if (this.quantifierAhead()) throw this.invalid('multiple repeat', this.i);
    const [min, max] = bounds;
    if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT))
      throw this.refuse(`a repeat count above ${MAX_REPEAT} (${this.cs.slice(at, this.i).join('')})`, at);
    return { kind: 'repeat', item: atom, min, max };
  }

  private quantifierAhead(): boolean {
    const save = this.i;
    const q = this.quantifier();
    this.i = save;
    return q !== undefined;
  }

  /** `*`, `+`, `?`, `{n}`, `{n,}`, `{,m}`, `{n,m}`; a `{` that starts none of them is a literal (as in Python). */
  private quantifier(): [number, number] | undefined {
    const c = this.peek();
    if (c === '*' || c === '+' || c === '?') {
      this.i++;
      return c === '*' ? [0, Infinity] : c === '+' ? [1, Infinity] : [0, 1];
    }
    if (c !== '{') return undefined;
    const close = this.cs.indexOf('}', this.i);
    const m = close < 0 ? null : /^\{(\d*)(,?)(\d*)\}$/.exec(this.cs.slice(this.i, close + 1).join(''));
    if (!m || (m[1] === '' && m[2] === '')) return undefined;
    const start = this.i;
    this.i += m[0].length;
    const min = m[1] === '' ? 0 : Number(m[1]);
    const max = m[2] === '' ? min : m[3] === '' ? Infinity : Number(m[3]);
    if (max < min) throw this.invalid(`min repeat greater than max repeat (${m[0]})`, start);
    return [min, max];
  }

  private atom(): RegexNode {
    const at = this.i;
    const c = this.cs[this.i++]!;
    switch (c) {
      case '(':
        return this.group(at);
      case '[':
        return { kind: 'set', ranges: this.characterClass(at) };
      case '.':
        return { kind: 'set', ranges: without(ANY_CODE_POINT, NEWLINE) };
      case '\\':
        return { kind: 'set', ranges: this.escape(at, false) };
      case '^':
        throw this.refuse(`'^' other than at the start of the pattern`, at);
      case '$':
        throw this.refuse(`'$' other than at the end of the pattern`, at);
      case '*':
      case '+':
      case '?':
        throw this.invalid('nothing to repeat', at);
      case '{':
        this.i = at;
        if (this.quantifierAhead()) throw this.invalid('nothing to repeat', at);
        this.i = at + 1;
        return literal(0x7b);
      default:
        return literal(this.codePoint(c, at));
    }
  }

  private group(at: number): RegexNode {
    if (this.peek() === '?') {
      const next = this.cs[this.i + 1];
      const two = this.cs.slice(this.i + 1, this.i + 3).join('');
      if (next === ':') this.i += 2;
      else if (next === '=') throw this.refuse("the lookahead '(?='", at);
      else if (next === '!') throw this.refuse("the negative lookahead '(?!'", at);
      else if (two === '<=') throw this.refuse("the lookbehind '(?<='", at);
      else if (two === '<!') throw this.refuse("the negative lookbehind '(?<!'", at);
      else if (two === 'P=') throw this.refuse("the named backreference '(?P='", at);
      else if (next === '<' || next === 'P' || next === "'") throw this.refuse(`the named group '(?${next}'`, at);
      else if (next === '#') throw this.refuse("the comment group '(?#'", at);
      else if (next === '>') throw this.refuse("the atomic group '(?>'", at);
      else if (next === '(') throw this.refuse("the conditional group '(?('", at);
      else if (next !== undefined && /[a-zA-Z-]/.test(next)) throw this.refuse(`the inline flags '(?${next}'`, at);
      else throw this.invalid("unknown extension '(?'", at);
    }
    if (++this.depth > MAX_GROUP_DEPTH) throw this.refuse(`groups nested over ${MAX_GROUP_DEPTH} deep`, at);
    const inner = this.alternation();
    this.depth--;
    if (this.peek() !== ')') throw this.invalid('missing ), unterminated subpattern', at);
    this.i++;
    return inner;
  }

  /** `[...]` after its '[': the code points it matches (surrogates aside, which UTF-8 cannot write). */
  private characterClass(at: number): CodeRange[] {
    const negated = this.peek() === '^';
    if (negated) this.i++;
    const ranges: CodeRange[] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw this.invalid('unterminated character set', at);
      if (c === ']' && !first) break;
      first = false;
      if (c === '[' && /^\[:\^?[a-z]+:\]/.test(this.cs.slice(this.i, this.i + 16).join('')))
        throw this.refuse('the POSIX class [:name:]', this.i);
      const lo = this.classAtom();
      if (this.peek() === '-' && this.cs[this.i + 1] !== undefined && this.cs[this.i + 1] !== ']') {
        const dash = this.i++;
        const hi = this.classAtom();
        if (lo.length !== 1 || hi.length !== 1 || lo[0]![0] !== lo[0]![1] || hi[0]![0] !== hi[0]![1])
          throw this.invalid('bad character range (a class escape as an end)', dash);
        if (hi[0]![0] < lo[0]![0]) throw this.invalid('bad character range (its end is before its start)', dash);
        ranges.push([lo[0]![0], hi[0]![0]]);
      } else ranges.push(...lo);
    }
    this.i++;
    const set = normalize(ranges);
    return negated ? negate(set) : set;
  }

  /** One member of a class: a character, or an escape (a class escape may stand for many). */
  private classAtom(): readonly CodeRange[] {
    const at = this.i;
    const c = this.cs[this.i++]!;
    if (c !== '\\') return [[this.codePoint(c, at), this.codePoint(c, at)]];
    return this.escape(at, true);
  }

  /** The escape after a '\' at `at`. */
  private escape(at: number, inClass: boolean): readonly CodeRange[] {
    const c = this.cs[this.i++];
    if (c === undefined) throw this.invalid('bad escape (end of pattern)', at);
    const cls = CLASS_ESCAPES[c];
    if (cls) return cls;
    const simple = SIMPLE_ESCAPES[c];
    if (simple !== undefined) return [[simple, simple]];
    if (c === 'b' && inClass) return [[0x08, 0x08]];
    if (c === 'x' || c === 'u' || c === 'U') {
      const cp = this.hexEscape(c, at, inClass);
      return [[cp, cp]];
    }
    if (c === '0') {
      if (/[0-7]/.test(this.peek() ?? '')) throw this.refuse('an octal escape', at);
      return [[0, 0]];
    }
    if (/[1-9]/.test(c)) throw this.refuse(`the backreference \\${c}`, at);
    if ((c === 'A' || c === 'Z' || c === 'z') && !inClass) throw this.refuse(`the anchor \\${c} other than at the start or end`, at);
    const named = REFUSED_ESCAPES[c];
    if (named) throw this.refuse(named, at);
    if (/[A-Za-z0-9]/.test(c)) throw this.invalid(`bad escape \\${c}`, at);
    const cp = this.codePoint(c, at);
    return [[cp, cp]];
  }

  /** \xhh, \x{h...}, \uhhhh, \u{h...}, \Uhhhhhhhh; a \u surrogate pair is one code point. */
  private hexEscape(kind: string, at: number, inClass: boolean): number {
    let digits: string;
    if (this.peek() === '{' && kind !== 'U') {
      const close = this.cs.indexOf('}', this.i);
      digits = close < 0 ? '' : this.cs.slice(this.i + 1, close).join('');
      if (!/^[0-9a-fA-F]{1,6}$/.test(digits)) throw this.invalid(`bad escape \\${kind}{...}`, at);
      this.i = close + 1;
    } else {
      const n = kind === 'x' ? 2 : kind === 'u' ? 4 : 8;
      digits = this.cs.slice(this.i, this.i + n).join('');
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(digits)) throw this.invalid(`bad escape \\${kind} (${n} hex digits expected)`, at);
      this.i += n;
    }
    let cp = parseInt(digits, 16);
    if (cp >= 0xd800 && cp <= 0xdbff && this.lookingAt('\\u')) {
      const low = parseInt(this.cs.slice(this.i + 2, this.i + 6).join(''), 16);
      if (low >= 0xdc00 && low <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        this.i += 6;
      }
    }
    if (cp > MAX_CODE_POINT) throw this.invalid(`bad escape: ${digits} is past U+10FFFF`, at);
    // in a class a surrogate may bound a range (the surrogates in it are left out, as UTF-8 cannot write them)
    if (cp >= 0xd800 && cp <= 0xdfff && !inClass) throw this.refuse('a lone surrogate code point (UTF-8 cannot encode it)', at);
    return cp;
  }

  private codePoint(c: string, at: number): number {
    const cp = c.codePointAt(0)!;
    if (cp >= 0xd800 && cp <= 0xdfff) throw this.refuse('a lone surrogate (UTF-8 cannot encode it)', at);
    return cp;
  }

  private peek(): string | undefined {
    return this.cs[this.i];
  }

  private lookingAt(s: string): boolean {
    return this.cs.slice(this.i, this.i + s.length).join('') === s;
  }

  private refuse(what: string, at: number): GrammarError {
    return new GrammarError(`${this.param}: ${what} at position ${at} is not supported in a regex constraint`, this.param);
  }

  private invalid(what: string, at = this.i): GrammarError {
    return new GrammarError(`${this.param}: invalid regex, ${what} at position ${at}`, this.param);
  }
}

function literal(cp: number): RegexNode {
  return { kind: 'set', ranges: [[cp, cp]] };
}

/** Sorted, merged ranges. */
export function normalize(ranges: readonly CodeRange[]): CodeRange[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/** Every code point not in `set` (which is normalized). */
export function negate(set: readonly CodeRange[]): CodeRange[] {
  const out: CodeRange[] = [];
  let next = 0;
  for (const [lo, hi] of normalize(set)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

function without(set: readonly CodeRange[], cp: number): CodeRange[] {
  return normalize(set).flatMap(([lo, hi]): CodeRange[] =>
    cp < lo || cp > hi
      ? [[lo, hi]]
      : (
          [
            [lo, cp - 1],
            [cp + 1, hi],
          ] as CodeRange[]
        ).filter(([a, b]) => a <= b),
  );
}

/**
 * The UTF-8 encodings of code points lo..hi as sequences of byte ranges (each sequence one
 * range per byte), surrogates left out: the split of Russ Cox's utf8-ranges, so every
 * sequence matches well-formed UTF-8 only.
 */
export function utf8Sequences(lo: number, hi: number): [number, number][][] {
  const out: [number, number][][] = [];
  const split = (a: number, b: number): void => {
    if (a > b) return;
    if (a < 0xd800 && b > 0xdfff) return (split(a, 0xd7ff), split(0xe000, b));
    if (a >= 0xd800 && b <= 0xdfff) return;
    if (a >= 0xd800 && a <= 0xdfff) return split(0xe000, b);
    if (b >= 0xd800 && b <= 0xdfff) return split(a, 0xd7ff);
    for (const edge of [0x7f, 0x7ff, 0xffff]) if (a <= edge && b > edge) return (split(a, edge), split(edge + 1, b));
    const n = a <= 0x7f ? 1 : a <= 0x7ff ? 2 : a <= 0xffff ? 3 : 4;
    for (let k = 1; k < n; k++) {
      const m = (1 << (6 * k)) - 1;
      if ((a & ~m) !== (b & ~m)) {
        if ((a & m) !== 0) return (split(a, a | m), split((a | m) + 1, b));
        if ((b & m) !== m) return (split(a, (b & ~m) - 1), split(b & ~m, b));
      }
    }
    const ea = encode(a);
    const eb = encode(b);
    out.push(ea.map((x, i) => [x, eb[i]!]));
  };
  split(lo, hi);
  return out;
}

function encode(cp: number): number[] {
  if (cp <= 0x7f) return [cp];
  if (cp <= 0x7ff) return [0xc0 | (cp >> 6), 0x80 | (cp & 0x3f)];
  if (cp <= 0xffff) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
}
