/**
 * JSON (RFC 8259) as grammar rules over bytes: whitespace, strings (escapes, \uXXXX, and
 * well-formed UTF-8 for everything past ASCII, so the text always decodes), numbers,
 * literals, and generic objects and arrays. json_object mode uses them as they are; the
 * JSON Schema compiler (json-schema.ts) assembles the same rules with its own restrictions.
 *
 * A rule is its start node; calls of it come back to the node the caller names. Rules are
 * memoized, so every string without limits in a grammar is the same handful of nodes.
 */
import { GrammarBuilder, type Grammar, type NodeId } from './grammar.js';
import { runToEnd, type Slicer } from './slices.js';

/**
 * Whitespace between two tokens of the JSON text: nothing, one space, or one newline and
 * then up to this many spaces or tabs of indentation (llama.cpp's JSON grammar makes the
 * same choice; outlines allows one space at most). Compact and pretty-printed JSON both
 * fit. A bound, because a model steered into JSON it does not know spends its tokens on
 * whitespace otherwise: the demo model, allowed any run of 24 bytes, wrote runs of 20
 * spaces and newlines between every two tokens until max_tokens.
 */
export const MAX_INDENT = 20;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const enc = new TextEncoder();

export interface StringLimits {
  /** Characters (code points; an escape is one), as JSON Schema counts them. */
  minLength?: number;
  maxLength?: number;
}

/** One object property, in the order it is generated. */
export interface PropertyRule {
  name: string;
  value: NodeId;
  required: boolean;
}

export class JsonRules {
  private whitespaceRule: NodeId | undefined;
  private anyValueRule: NodeId | undefined;
  private numberRule: NodeId | undefined;
  private integerRule: NodeId | undefined;
  private readonly strings = new Map<string, NodeId>();
  private readonly literalSets = new Map<string, NodeId>();

  constructor(readonly g: GrammarBuilder = new GrammarBuilder()) {}

  /** A grammar of one value of `rule`, alone in the text save for whitespace before it. */
  document(rule: NodeId): Grammar {
    return runToEnd(this.documentSteps(rule));
  }

  /** document() in slices (slices.ts). */
  *documentSteps(rule: NodeId): Generator<void, Grammar> {
    const { g } = this;
    const start = g.node();
    const value = g.node();
    const end = g.node();
    this.wsThen(start, value);
    g.call(value, rule, end);
    // nothing after the value: the only continuation of a complete text is EOS
    g.accept(end);
    return yield* g.buildSteps(start);
  }

  /** `from` allows whitespace (see MAX_INDENT), then goes on as `next` does (`next` itself takes none). */
  wsThen(from: NodeId, next: NodeId): void {
    this.g.epsilon(from, next);
    this.g.call(from, this.whitespace(), next);
  }

  /** A new node that allows whitespace and then goes on as `next`. */
  ws(next: NodeId): NodeId {
    const n = this.g.node();
    this.wsThen(n, next);
    return n;
  }

  /** Any JSON value. */
  anyValue(): NodeId {
    if (this.anyValueRule !== undefined) return this.anyValueRule;
    const start = (this.anyValueRule = this.g.node());
    for (const alt of [this.object(start), this.array(start), this.string(), this.number(), this.literals(['true', 'false', 'null'])])
      this.g.epsilon(start, alt);
    return start;
  }

  /** An object with any keys, each value a `value` (default: any JSON value). */
  object(value: NodeId = this.anyValue()): NodeId {
    const { g } = this;
    const start = g.node();
    const end = g.node();
    g.accept(end);
    const first = g.node();
    const afterKey = g.node();
    const colon = g.node();
    const afterValue = g.node();
    const next = g.node();
    g.byte(start, 0x7b, this.ws(first));
    g.byte(first, 0x7d, end);
    g.call(first, this.string(), this.ws(afterKey));
    g.byte(afterKey, 0x3a, this.ws(colon));
    g.call(colon, value, this.ws(afterValue));
    g.byte(afterValue, 0x2c, this.ws(next));
    g.byte(afterValue, 0x7d, end);
    g.call(next, this.string(), this.ws(afterKey));
    return start;
  }

  /**
   * An object of exactly these properties in this order, each optional one may be left out
   * (as xgrammar and outlines generate them: one order, so the automaton stays small and
   * deterministic). In slices (slices.ts): with many optional properties each place may be
   * followed by any later key, a trie of them each, so an object of a few hundred optional
   * properties builds tens of thousands of nodes here (100-230 ms in one piece).
   */
  *objectOfSteps(properties: readonly PropertyRule[], slicer: Slicer): Generator<void, NodeId> {
    const { g } = this;
    const n = properties.length;
    const start = g.node();
    const end = g.node();
    g.accept(end);
    const lastRequired = properties.map((p) => p.required).lastIndexOf(true);
    const requiredAfter = (i: number): boolean => lastRequired > i;
    /** Properties that may come next after property i: up to and including the first required one. */
    const candidates = (i: number): number[] => {
      const out: number[] = [];
      for (let j = i + 1; j < n; j++) {
        out.push(j);
        if (properties[j]!.required) break;
      }
      return out;
    };
    // after each property's value: ws, then ',' and the next key, or '}'
    const afterValue = properties.map(() => g.node());
    const valueNode = properties.map((p, j) => {
      const colon = g.node();
      const value = g.node();
      g.byte(colon, 0x3a, this.ws(value));
      g.call(value, p.value, this.ws(afterValue[j]!));
      return this.ws(colon);
    });
    const keyBytes = properties.map((p) => [...jsonStringBytes(p.name).subarray(1)]);
    const keyChoice = (next: readonly number[]): NodeId => {
      const root = g.node();
      this.trie(
        root,
        next.map((j) => keyBytes[j]!),
        (index) => valueNode[next[index]!]!,
      );
      return root;
    };
    const opening = g.node();
    g.byte(start, 0x7b, this.ws(opening));
    for (let i = -1; i < n; i++) {
      if (slicer.due(true)) yield;
      const at = i < 0 ? opening : afterValue[i]!;
      if (!requiredAfter(i)) g.byte(at, 0x7d, end);
      const next = candidates(i);
      if (next.length === 0) continue;
      if (i < 0) g.byte(at, QUOTE, keyChoice(next));
      else {
        const comma = g.node();
        g.byte(at, 0x2c, this.ws(comma));
        g.byte(comma, QUOTE, keyChoice(next));
      }
    }
    return start;
  }

  /** An array of `item`s, between minItems and maxItems of them. */
  array(item: NodeId = this.anyValue(), minItems = 0, maxItems = Infinity): NodeId {
    const { g } = this;
    const start = g.node();
    const end = g.node();
    g.accept(end);
    const first = g.node();
    g.byte(start, 0x5b, this.ws(first));
    if (minItems === 0) g.byte(first, 0x5d, end);
    if (maxItems === 0) return start;
    // after[c]: c items written; counted up to maxItems, or up to minItems and then looping
    const top = Number.isFinite(maxItems) ? maxItems : Math.max(minItems, 1);
    const after: NodeId[] = [];
    for (let c = 1; c <= top; c++) after[c] = g.node();
    g.call(first, item, this.ws(after[1]!));
    for (let c = 1; c <= top; c++) {
      const at = after[c]!;
      if (c >= minItems) g.byte(at, 0x5d, end);
      if (c < maxItems) {
        const next = g.node();
        g.byte(at, 0x2c, this.ws(next));
        g.call(next, item, this.ws(after[Math.min(c + 1, top)]!));
      }
    }
    return start;
  }

  /** A JSON string, optionally of a bounded number of characters. */
  string(limits: StringLimits = {}): NodeId {
    const min = limits.minLength ?? 0;
    const max = limits.maxLength ?? Infinity;
    const key = `${min}:${max}`;
    const known = this.strings.get(key);
    if (known !== undefined) return known;
    const { g } = this;
    const start = g.node();
    const end = g.node();
    g.accept(end);
    // content[k]: k characters written; counted up to max, or up to min and then looping
    const top = Number.isFinite(max) ? max : min;
    const content: NodeId[] = [];
    for (let k = 0; k <= top; k++) content[k] = g.node();
    g.byte(start, QUOTE, content[0]!);
    for (let k = 0; k <= top; k++) {
      if (k >= min) g.byte(content[k]!, QUOTE, end);
      if (k < max) this.character(content[k]!, content[Math.min(k + 1, top)]!);
      g.stringContent(content[k]!, max - k);
    }
    this.strings.set(key, start);
    return start;
  }

  /**
   * Text written as it is rather than as a JSON string (a glm45 call's string argument,
   * between its tags), optionally of a bounded number of characters: any character but '<',
   * with which the closing tag begins, and control characters other than tab, newline and
   * carriage return; well-formed UTF-8 past ASCII, as in strings.
   */
  rawText(limits: StringLimits = {}): NodeId {
    const min = limits.minLength ?? 0;
    const max = limits.maxLength ?? Infinity;
    const key = `raw:${min}:${max}`;
    const known = this.strings.get(key);
    if (known !== undefined) return known;
    const { g } = this;
    // content[k]: k characters written, counted as string() counts them
    const top = Number.isFinite(max) ? max : min;
    const content: NodeId[] = [];
    for (let k = 0; k <= top; k++) content[k] = g.node();
    for (let k = 0; k <= top; k++) {
      const from = content[k]!;
      const to = content[Math.min(k + 1, top)]!;
      if (k >= min) g.accept(from);
      if (k >= max) continue;
      for (const b of [0x09, 0x0a, 0x0d]) g.byte(from, b, to);
      g.range(from, 0x20, 0x3b, to);
      g.range(from, 0x3d, 0x7f, to);
      this.multibyteCharacter(from, to);
    }
    this.strings.set(key, content[0]!);
    return content[0]!;
  }

  /** A JSON number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
  number(): NodeId {
    if (this.numberRule !== undefined) return this.numberRule;
    const { g } = this;
    const start = (this.numberRule = g.node());
    const { afterInteger, afterZero } = this.integerPart(start);
    const dot = g.node();
    const fraction = g.node();
    const exp = g.node();
    const expSign = g.node();
    const expDigits = g.node();
    for (const n of [fraction, expDigits]) g.accept(n);
    for (const n of [afterInteger, afterZero]) {
      g.byte(n, 0x2e, dot);
      g.byte(n, 0x65, exp);
      g.byte(n, 0x45, exp);
    }
    g.range(dot, 0x30, 0x39, fraction);
    g.range(fraction, 0x30, 0x39, fraction);
    g.byte(fraction, 0x65, exp);
    g.byte(fraction, 0x45, exp);
    g.byte(exp, 0x2b, expSign);
    g.byte(exp, 0x2d, expSign);
    g.range(exp, 0x30, 0x39, expDigits);
    g.range(expSign, 0x30, 0x39, expDigits);
    g.range(expDigits, 0x30, 0x39, expDigits);
    return start;
  }

  /** An integer written plainly: -? (0 | [1-9][0-9]*), no fraction or exponent. */
  integer(): NodeId {
    if (this.integerRule !== undefined) return this.integerRule;
    const start = (this.integerRule = this.g.node());
    this.integerPart(start);
    return start;
  }

  /** Exactly one of these JSON texts, byte for byte (enum, const, true/false/null). */
  literals(texts: readonly string[]): NodeId {
    const key = JSON.stringify(texts);
    const known = this.literalSets.get(key);
    if (known !== undefined) return known;
    const { g } = this;
    const start = g.node();
    const end = g.node();
    g.accept(end);
    this.trie(
      start,
      texts.map((t) => [...enc.encode(t)]),
      () => end,
    );
    this.literalSets.set(key, start);
    return start;
  }

  /** Byte strings from `root`, sharing prefixes (one may be a prefix of another); string i goes on at target(i). */
  private trie(root: NodeId, strings: readonly number[][], target: (index: number) => NodeId): void {
    const { g } = this;
    // one node per distinct prefix, so the choice stays deterministic byte by byte
    const children = new Map<NodeId, Map<number, NodeId>>();
    strings.forEach((bytes, index) => {
      let at = root;
      for (const b of bytes) {
        let kids = children.get(at);
        if (!kids) children.set(at, (kids = new Map()));
        let next = kids.get(b);
        if (next === undefined) {
          next = g.node();
          kids.set(b, next);
          g.byte(at, b, next);
        }
        at = next;
      }
      g.epsilon(at, target(index));
    });
  }

  /** `-? (0 | [1-9][0-9]*)` from start; both ends are final. */
  private integerPart(start: NodeId): { afterInteger: NodeId; afterZero: NodeId } {
    const { g } = this;
    const minus = g.node();
    const afterZero = g.node();
    const afterInteger = g.node();
    g.accept(afterZero);
    g.accept(afterInteger);
    g.byte(start, 0x2d, minus);
    for (const from of [start, minus]) {
      g.byte(from, 0x30, afterZero);
      g.range(from, 0x31, 0x39, afterInteger);
    }
    g.range(afterInteger, 0x30, 0x39, afterInteger);
    return { afterInteger, afterZero };
  }

  /**
   * One character of string content from `from` to `to`: a printable ASCII byte other than
   * '"' and '\', an escape, or a well-formed UTF-8 sequence (no overlongs, no surrogates,
   * nothing past U+10FFFF: the table of RFC 3629).
   */
  private character(from: NodeId, to: NodeId): void {
    const { g } = this;
    g.range(from, 0x20, 0x21, to);
    g.range(from, 0x23, 0x5b, to);
    g.range(from, 0x5d, 0x7f, to);
    const escape = g.node();
    g.byte(from, BACKSLASH, escape);
    for (const c of '"\\/bfnrt') g.byte(escape, c.charCodeAt(0), to);
    let hex = to;
    for (let i = 0; i < 4; i++) {
      const digit = g.node();
      g.range(digit, 0x30, 0x39, hex);
      g.range(digit, 0x41, 0x46, hex);
      g.range(digit, 0x61, 0x66, hex);
      hex = digit;
    }
    g.byte(escape, 0x75, hex);
    this.multibyteCharacter(from, to);
  }

  /** A character past ASCII from `from` to `to`, as well-formed UTF-8 (RFC 3629's table). */
  private multibyteCharacter(from: NodeId, to: NodeId): void {
    const { g } = this;
    const cont = (lo: number, hi: number, next: NodeId): NodeId => {
      const n = g.node();
      g.range(n, lo, hi, next);
      return n;
    };
    const one = cont(0x80, 0xbf, to);
    const two = cont(0x80, 0xbf, one);
    const three = cont(0x80, 0xbf, two);
    g.range(from, 0xc2, 0xdf, one);
    g.byte(from, 0xe0, cont(0xa0, 0xbf, one));
    g.range(from, 0xe1, 0xec, two);
    g.byte(from, 0xed, cont(0x80, 0x9f, one));
    g.range(from, 0xee, 0xef, two);
    g.byte(from, 0xf0, cont(0x90, 0xbf, two));
    g.range(from, 0xf1, 0xf3, three);
    g.byte(from, 0xf4, cont(0x80, 0x8f, two));
  }

  private whitespace(): NodeId {
    if (this.whitespaceRule !== undefined) return this.whitespaceRule;
    const { g } = this;
    const start = g.node();
    const space = g.node();
    g.accept(space);
    g.byte(start, 0x20, space);
    // indent[k]: a newline and k spaces or tabs
    const indent: NodeId[] = [];
    for (let k = 0; k <= MAX_INDENT; k++) {
      indent.push(g.node());
      g.accept(indent[k]!);
    }
    g.byte(start, 0x0a, indent[0]!);
    for (let k = 0; k < MAX_INDENT; k++) {
      g.byte(indent[k]!, 0x20, indent[k + 1]!);
      g.byte(indent[k]!, 0x09, indent[k + 1]!);
    }
    return (this.whitespaceRule = start);
  }
}

/** The UTF-8 bytes of a string written as JSON, quotes included. */
export function jsonStringBytes(s: string): Uint8Array {
  return enc.encode(JSON.stringify(s));
}
