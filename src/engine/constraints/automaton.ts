/**
 * Running a Grammar over bytes: the pushdown automaton's state is a set of stacks (usually
 * one: JSON is deterministic byte by byte; alternatives of a schema's anyOf that begin alike
 * are followed side by side until a byte tells them apart).
 *
 * Stacks are immutable linked lists sharing their tails, so a state can be branched on
 * every byte of a vocabulary walk without copying, and a byte that leaves the state as it
 * was (most bytes inside a string) allocates nothing.
 */
import { GrammarError, type Grammar, type Move, type NodeId } from './grammar.js';

export class Stack {
  private keyCache: string | undefined;

  constructor(
    readonly node: NodeId,
    readonly below: Stack | null,
  ) {}

  /** The node ids from the top down: equal keys, equal futures. */
  get key(): string {
    return (this.keyCache ??= this.below === null ? String(this.node) : `${this.node},${this.below.key}`);
  }
}

/** A set of stacks; empty once the bytes fed so far fit no way through the grammar. */
export type AutomatonState = readonly Stack[];

export const REJECTED: AutomatonState = Object.freeze([]);

/**
 * More parallel stacks than any practical schema needs (and each costs the mask walk a
 * step per trie node): a text that needs more is refused where it happens, as a fault of
 * the schema (anyOf of hundreds of alternatives that begin alike).
 */
const MAX_PARALLEL_STACKS = 512;

export class GrammarAutomaton {
  private readonly final: Uint8Array;
  private readonly lists: Move[][];

  constructor(readonly grammar: Grammar) {
    this.final = grammar.final;
    this.lists = grammar.moveLists;
  }

  initial(): AutomatonState {
    return [new Stack(this.grammar.start, null)];
  }

  /** The state after one more byte (REJECTED when it fits nowhere). */
  advance(state: AutomatonState, byte: number): AutomatonState {
    if (state.length === 1) {
      // the common case, without allocating when nothing changes
      const s = state[0]!;
      if (!this.final[s.node]) {
        const index = this.grammar.table(s.node)[byte]!;
        if (index < 0) return REJECTED;
        const list = this.lists[index]!;
        if (list.length === 1) {
          const next = apply(s, list[0]!);
          return next === s ? state : [next];
        }
      }
    }
    const out: Stack[] = [];
    for (const s of state) this.stepInto(s, byte, out);
    return out.length <= 1 ? (out.length === 0 ? REJECTED : out) : dedupe(out);
  }

  /** Feeds bytes in order; REJECTED as soon as one does not fit. */
  advanceBytes(state: AutomatonState, bytes: ArrayLike<number>): AutomatonState {
    let s = state;
    for (let i = 0; i < bytes.length && s.length > 0; i++) s = this.advance(s, bytes[i]!);
    return s;
  }

  /** The text so far is a whole value: every rule on some stack may end. */
  isComplete(state: AutomatonState): boolean {
    return state.some((s) => {
      for (let cur: Stack | null = s; cur !== null; cur = cur.below) if (!this.final[cur.node]) return false;
      return true;
    });
  }

  /** Equal keys, equal sets of continuations: what masks are cached by. */
  key(state: AutomatonState): string {
    if (state.length === 1) return state[0]!.key;
    return state
      .map((s) => s.key)
      .sort()
      .join('|');
  }

  /** The moves of `s` on `byte`, and those of the stacks below when the top rule may end first. */
  private stepInto(s: Stack, byte: number, out: Stack[]): void {
    for (let cur: Stack | null = s; cur !== null; cur = cur.below) {
      const index = this.grammar.table(cur.node)[byte]!;
      if (index >= 0) for (const m of this.lists[index]!) out.push(apply(cur, m));
      if (!this.final[cur.node]) return;
    }
  }
}

function apply(s: Stack, m: Move): Stack {
  if (m.returns.length === 0) return m.top === s.node ? s : new Stack(m.top, s.below);
  let base = s.below;
  for (const r of m.returns) base = new Stack(r, base);
  return new Stack(m.top, base);
}

function dedupe(stacks: Stack[]): AutomatonState {
  const byKey = new Map<string, Stack>();
  for (const s of stacks) if (!byKey.has(s.key)) byKey.set(s.key, s);
  if (byKey.size > MAX_PARALLEL_STACKS)
    throw new GrammarError(
      `response_format: the schema's alternatives are too alike for too long (${byKey.size} parses at once, at most ${MAX_PARALLEL_STACKS})`,
    );
  return byKey.size === stacks.length ? stacks : [...byKey.values()];
}
