/**
 * Regular expressions (vLLM's `regex` / `guided_regex`) and fixed choices (`choice`) as
 * grammars: a pattern is parsed into a small syntax tree (regex-syntax.ts), turned into a
 * byte-level NFA (every character class as the UTF-8 byte sequences of its code points),
 * and the NFA is determinized into GrammarBuilder nodes joined by byte ranges only. A DFA
 * keeps the automaton to one stack, so masks are cached per DFA state and a walk never
 * follows parallel parses.
 *
 * The whole output must match (as outlines and xgrammar match), so the DFA's accepting
 * states are the grammar's final nodes: EOS is allowed exactly there, and a state with no
 * byte to go on allows EOS alone.
 */
import { DEFAULT_MAX_GRAMMAR_NODES, GrammarBuilder, GrammarError, type Grammar, type NodeId } from './grammar.js';
import { parseRegex, utf8Sequences, type CodeRange, type RegexNode } from './regex-syntax.js';
import { Slicer, runToEnd } from './slices.js';

/** Largest list of choices, and longest choice (UTF-16 code units), a request may send. */
export const MAX_CHOICES = 1024;
export const MAX_CHOICE_LENGTH = 1024;
/** Characters of all choices together. */
export const MAX_CHOICES_TOTAL_LENGTH = 65_536;
/** Longest pattern (UTF-16 code units). */
export const MAX_PATTERN_LENGTH = 16_384;
/** NFA states a pattern may expand to (repeats copy their operand) before it is refused as too large. */
const MAX_NFA_NODES = 200_000;
/** NFA states and edges the subset construction may look at (about a second of one core). */
const MAX_DETERMINIZE_WORK = 12_000_000;

export interface PatternOptions {
  /** The request parameter the pattern came from, named by errors (default response_format). */
  param?: string;
  /** Largest DFA (grammar nodes). */
  maxNodes?: number;
}

/** A grammar of the texts the whole of which `pattern` matches. */
export function compileRegex(pattern: string, options: PatternOptions = {}): Grammar {
  return runToEnd(compileRegexSteps(pattern, options));
}

/**
 * compileRegex in slices: the generator pauses after every few ms of work, so that a caller
 * can give the event loop back between slices (an ambiguous pattern may take a second
 * before it is refused; other requests, health probes and heartbeats must not wait for it).
 */
export function* compileRegexSteps(pattern: string, options: PatternOptions = {}): Generator<void, Grammar> {
  const param = options.param ?? 'response_format';
  return yield* determinize(parseRegex(pattern, param), { param, what: 'the pattern', maxNodes: options.maxNodes });
}

/** A grammar of exactly one of `choices`. */
export function compileChoices(choices: readonly string[], options: PatternOptions = {}): Grammar {
  return runToEnd(compileChoicesSteps(choices, options));
}

/** compileChoices in slices, as compileRegexSteps. */
export function* compileChoicesSteps(choices: readonly string[], options: PatternOptions = {}): Generator<void, Grammar> {
  const param = options.param ?? 'response_format';
  const items = choices.map((c, i): RegexNode => {
    const points: CodeRange[] = [];
    for (const ch of c) {
      const cp = ch.codePointAt(0)!;
      if (cp >= 0xd800 && cp <= 0xdfff)
        throw new GrammarError(`${param}: choice ${i} holds a lone surrogate, which UTF-8 cannot encode`, param);
      points.push([cp, cp]);
    }
    return { kind: 'concat', items: points.map((r) => ({ kind: 'set', ranges: [r] })) };
  });
  return yield* determinize({ kind: 'alt', items }, { param, what: 'the list of choices', maxNodes: options.maxNodes });
}

/** A byte-level NFA: edges over byte ranges, and epsilon edges. */
class Nfa {
  readonly edges: { lo: number; hi: number; to: number }[][] = [];
  readonly eps: number[][] = [];

  constructor(private readonly where: Required<Pick<DeterminizeOptions, 'param' | 'what'>>) {}

  node(): number {
    if (this.edges.length >= MAX_NFA_NODES) {
      const { param, what } = this.where;
      throw new GrammarError(`${param}: ${what} is too large for constrained decoding (over ${MAX_NFA_NODES} NFA states)`, param);
    }
    this.edges.push([]);
    this.eps.push([]);
    return this.edges.length - 1;
  }

  /** The text of `n` from `from` to `to`. */
  emit(n: RegexNode, from: number, to: number): void {
    switch (n.kind) {
      case 'set':
        return this.set(n.ranges, from, to);
      case 'concat': {
        if (n.items.length === 0) return void this.eps[from]!.push(to);
        let at = from;
        n.items.forEach((item, i) => {
          const next = i === n.items.length - 1 ? to : this.node();
          this.emit(item, at, next);
          at = next;
        });
        return;
      }
      case 'alt':
        for (const item of n.items) {
          // each alternative in its own pair of nodes, so that a loop around one cannot leak into another
          const a = this.node();
          const b = this.node();
          this.eps[from]!.push(a);
          this.emit(item, a, b);
          this.eps[b]!.push(to);
        }
        return;
      case 'repeat':
        return this.repeat(n.item, n.min, n.max, from, to);
    }
  }

  private repeat(item: RegexNode, min: number, max: number, from: number, to: number): void {
    let at = from;
    for (let i = 0; i < min; i++) {
      const next = this.node();
      this.emit(item, at, next);
      at = next;
    }
    if (max === Infinity) {
      const loop = this.node();
      const back = this.node();
      this.eps[at]!.push(loop);
      this.emit(item, loop, back);
      this.eps[back]!.push(loop);
      this.eps[loop]!.push(to);
      return;
    }
    // nested optionals, x(x(x)?)?, rather than x?x?x?: one way to match each count, so the DFA stays small
    for (let i = min; i < max; i++) {
      this.eps[at]!.push(to);
      const next = i === max - 1 ? to : this.node();
      this.emit(item, at, next);
      at = next;
    }
    if (min === max) this.eps[at]!.push(to);
  }

  private set(ranges: readonly CodeRange[], from: number, to: number): void {
    for (const [lo, hi] of ranges)
      for (const seq of utf8Sequences(lo, hi)) {
        let at = from;
        seq.forEach(([bLo, bHi], i) => {
          const next = i === seq.length - 1 ? to : this.node();
          this.edges[at]!.push({ lo: bLo, hi: bHi, to: next });
          at = next;
        });
      }
  }
}

interface DeterminizeOptions {
  param: string;
  /** What the errors call the source ('the pattern'). */
  what: string;
  maxNodes?: number;
}

/** Subset construction from the NFA of `ast` into grammar nodes; refuses a pattern that matches nothing. */
function* determinize(ast: RegexNode, options: DeterminizeOptions): Generator<void, Grammar> {
  const { param, what, maxNodes = DEFAULT_MAX_GRAMMAR_NODES } = options;
  const nfa = new Nfa({ param, what });
  const start = nfa.node();
  const accept = nfa.node();
  nfa.emit(ast, start, accept);

  const g = new GrammarBuilder(maxNodes + 1);
  const ids = new Map<string, NodeId>();
  const work: { id: NodeId; set: number[] }[] = [];
  let anyFinal = false;
  // NFA states and edges looked at: a pattern whose DFA states are each large sets (many
  // ways to be part-way through it at once) is refused before it holds the thread for long
  let spent = 0;
  const slicer = new Slicer();
  const spend = (units: number): void => {
    spent += units;
    if (spent > MAX_DETERMINIZE_WORK)
      throw new GrammarError(`${param}: ${what} is too complex for constrained decoding (too many ways to match it at once)`, param);
  };
  const stateOf = (targets: Iterable<number>): NodeId => {
    const set = closure(nfa, targets);
    spend(set.length);
    const key = set.join(',');
    let id = ids.get(key);
    if (id !== undefined) return id;
    if (g.size >= maxNodes)
      throw new GrammarError(`${param}: ${what} is too large for constrained decoding (its automaton has over ${maxNodes} states)`, param);
    id = g.node();
    ids.set(key, id);
    if (set.includes(accept)) {
      g.accept(id);
      anyFinal = true;
    }
    work.push({ id, set });
    return id;
  };
  const initial = stateOf([start]);
  while (work.length > 0) {
    if (slicer.due()) yield;
    const { id, set } = work.pop()!;
    const edges = set.flatMap((n) => nfa.edges[n]!);
    // the byte ranges on which the same edges apply, each one DFA edge
    const bounds = [...new Set(edges.flatMap((e) => [e.lo, e.hi + 1]))].sort((a, b) => a - b);
    spend(edges.length * Math.max(1, bounds.length - 1));
    for (let i = 0; i + 1 < bounds.length; i++) {
      const lo = bounds[i]!;
      const targets = edges.filter((e) => e.lo <= lo && lo <= e.hi).map((e) => e.to);
      if (targets.length > 0) g.range(id, lo, bounds[i + 1]! - 1, stateOf(targets));
    }
  }
  if (!anyFinal) throw new GrammarError(`${param}: ${what} matches no text, so no output can satisfy it`, param);
  return yield* g.buildSteps(initial);
}

/** The NFA states reachable from `targets` by epsilon edges, sorted (a DFA state). */
function closure(nfa: Nfa, targets: Iterable<number>): number[] {
  const seen = new Set<number>();
  const stack = [...targets];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    for (const t of nfa.eps[n]!) if (!seen.has(t)) stack.push(t);
  }
  return [...seen].sort((a, b) => a - b);
}
