/**
 * A byte-level grammar as a recursive transition network: nodes joined by byte-range edges,
 * epsilon edges, and calls of rules (a rule is its start node; it ends at a final node and
 * returns to the node the call named). That is exactly a pushdown automaton over bytes, and
 * it is what JSON and JSON Schema compile to (json-rules.ts, json-schema.ts).
 *
 * `GrammarBuilder` collects nodes; `build()` checks the graph once (no rule may call itself
 * before consuming a byte: left recursion would loop forever; every node kept can reach the
 * end of its rule: dead ends are pruned, so a constrained request can always finish) and
 * returns an immutable `Grammar`. The grammar's per-node move tables (byte -> the moves it
 * allows, epsilons and calls already followed) are computed on first use and shared by every
 * request using the grammar: a node's table costs one closure walk, once.
 */
import { AutoGlmError } from '../../errors.js';
import { Slicer, runToEnd } from './slices.js';

export type NodeId = number;

/**
 * One way to consume a byte from a node: the top of the stack becomes `top`, after pushing
 * `returns` (outermost first) where the node was: the return points of the rules entered.
 */
export interface Move {
  readonly top: NodeId;
  readonly returns: readonly NodeId[];
}

interface ByteEdge {
  lo: number;
  hi: number;
  to: NodeId;
}

interface CallEdge {
  rule: NodeId;
  ret: NodeId;
}

interface BuildNode {
  bytes: ByteEdge[];
  calls: CallEdge[];
  eps: NodeId[];
  final: boolean;
  /** Characters a string may still take here, when the node is inside a JSON string (see stringContent). */
  stringRoom?: number;
}

/** Grammar.stringRoom of a node that is not inside a string. */
export const NOT_IN_STRING = -1;
/** Grammar.stringRoom of an unbounded string. */
export const UNBOUNDED_STRING_ROOM = 0x7fffffff;

/**
 * Largest grammar a builder makes by default. Practical schemas compile to a few thousand
 * nodes; 100k nodes (an object of 300 optional properties, or eight strings of different
 * maxLength near 1024) take 0.2-0.5 s of one CPU core, which the server spends in slices of
 * a few ms before admission (ResponseFormatConstraints.precompile) and a library caller's
 * generate() at admission.
 */
export const DEFAULT_MAX_GRAMMAR_NODES = 100_000;

/**
 * A grammar that cannot be used: the message says why, for the client whose schema it came
 * from; `param` names where the schema was sent (a tool's parameters, or response_format).
 */
export class GrammarError extends AutoGlmError {
  constructor(message: string, param = 'response_format') {
    super('invalid_request', message, { param });
  }
}

export class GrammarBuilder {
  private readonly nodes: BuildNode[] = [];

  constructor(private readonly maxNodes = DEFAULT_MAX_GRAMMAR_NODES) {}

  get size(): number {
    return this.nodes.length;
  }

  node(): NodeId {
    if (this.nodes.length >= this.maxNodes)
      throw new GrammarError(`response_format: the schema is too large for constrained decoding (over ${this.maxNodes} grammar nodes)`);
    this.nodes.push({ bytes: [], calls: [], eps: [], final: false });
    return this.nodes.length - 1;
  }

  /** Bytes lo..hi (inclusive) lead from `from` to `to`. */
  range(from: NodeId, lo: number, hi: number, to: NodeId): void {
    this.nodes[from]!.bytes.push({ lo, hi, to });
  }

  byte(from: NodeId, b: number, to: NodeId): void {
    this.range(from, b, b, to);
  }

  /** A chain of literal bytes from `from` to `to` (empty: an epsilon edge). */
  literal(from: NodeId, bytes: ArrayLike<number>, to: NodeId): void {
    if (bytes.length === 0) return this.epsilon(from, to);
    let at = from;
    for (let i = 0; i < bytes.length - 1; i++) {
      const next = this.node();
      this.byte(at, bytes[i]!, next);
      at = next;
    }
    this.byte(at, bytes[bytes.length - 1]!, to);
  }

  /** From `from`, the rule starting at `rule` runs; when it ends, parsing goes on at `ret`. */
  call(from: NodeId, rule: NodeId, ret: NodeId): void {
    this.nodes[from]!.calls.push({ rule, ret });
  }

  epsilon(from: NodeId, to: NodeId): void {
    this.nodes[from]!.eps.push(to);
  }

  /** The rule this node belongs to may end here. */
  accept(node: NodeId): void {
    this.nodes[node]!.final = true;
  }

  /**
   * Declares the node a place between characters of a JSON string's content where up to
   * `room` more characters may come (Infinity: any number), every one of them allowed save
   * '"', '\\' and control characters, and none changing anything but the count. Mask walks
   * use it to allow the vocabulary's plain-text tokens at once instead of byte by byte
   * (mask-walk.ts); the token-mask tests hold it to the byte-level truth.
   */
  stringContent(node: NodeId, room: number): void {
    this.nodes[node]!.stringRoom = room;
  }

  build(start: NodeId): Grammar {
    return runToEnd(this.buildSteps(start));
  }

  /** build() in slices (slices.ts): its checks walk every node and edge, a few hundred ms at the node limit. */
  *buildSteps(start: NodeId): Generator<void, Grammar> {
    const slicer = new Slicer();
    const final = yield* finalClosure(this.nodes, slicer);
    yield* checkNoLeftRecursion(this.nodes, final, slicer);
    const productive = yield* productiveNodes(this.nodes, final, slicer);
    return new Grammar(this.nodes, start, { final, productive });
  }
}

/** What GrammarBuilder.buildSteps found of the graph. */
interface GraphFacts {
  final: Uint8Array;
  productive: Uint8Array;
}

const NO_MOVES = new Int32Array(256).fill(-1);

export class Grammar {
  readonly start: NodeId;
  readonly nodeCount: number;
  /** 1 where a rule may end at the node (epsilons and empty calls followed). */
  readonly final: Uint8Array;
  /** Per node: characters a string may still take there (see GrammarBuilder.stringContent), or NOT_IN_STRING. */
  readonly stringRoom: Int32Array;
  /** Lists of moves that table entries index. */
  readonly moveLists: Move[][] = [];
  private readonly tables: (Int32Array | undefined)[];
  private readonly productive: Uint8Array;
  private readonly listIndex = new Map<string, number>();
  private readonly internedMoves = new Map<string, Move>();

  /** Made by GrammarBuilder, which checks the graph first. */
  constructor(
    private readonly nodes: readonly BuildNode[],
    start: NodeId,
    facts: GraphFacts,
  ) {
    this.start = start;
    this.nodeCount = nodes.length;
    this.tables = new Array<Int32Array | undefined>(nodes.length);
    this.final = facts.final;
    this.stringRoom = Int32Array.from(nodes, (n) =>
      n.stringRoom === undefined ? NOT_IN_STRING : Math.min(n.stringRoom, UNBOUNDED_STRING_ROOM),
    );
    this.productive = facts.productive;
    if (!this.productive[start])
      throw new GrammarError('response_format: no finite JSON value satisfies the schema (every value would nest forever)');
  }

  /** Byte -> index into moveLists, or -1 when the node cannot consume the byte. */
  table(node: NodeId): Int32Array {
    return this.tables[node] ?? this.buildTable(node);
  }

  private buildTable(node: NodeId): Int32Array {
    const edges: { lo: number; hi: number; move: Move }[] = [];
    this.collect(node, [], edges);
    if (edges.length === 0) return (this.tables[node] = NO_MOVES);
    const buckets: Move[][] = [];
    for (const e of edges) for (let b = e.lo; b <= e.hi; b++) (buckets[b] ??= []).push(e.move);
    const table = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      const moves = buckets[b];
      if (!moves) continue;
      const unique = [...new Set(moves)];
      const key = unique.map((m) => moveKey(m.top, m.returns)).join(';');
      let index = this.listIndex.get(key);
      if (index === undefined) {
        index = this.moveLists.length;
        this.moveLists.push(unique);
        this.listIndex.set(key, index);
      }
      table[b] = index;
    }
    return (this.tables[node] = table);
  }

  /** Byte edges reachable from `node` without consuming, each with the returns pushed on the way. */
  private collect(node: NodeId, returns: readonly NodeId[], out: { lo: number; hi: number; move: Move }[]): void {
    const n = this.nodes[node]!;
    for (const e of n.bytes) if (this.productive[e.to]) out.push({ lo: e.lo, hi: e.hi, move: this.move(e.to, returns) });
    for (const to of n.eps) if (this.productive[to]) this.collect(to, returns, out);
    for (const c of n.calls) {
      if (!this.productive[c.rule] || !this.productive[c.ret]) continue;
      this.collect(c.rule, [...returns, c.ret], out);
      // a rule that may match nothing: parsing may also go straight on at the return node
      if (this.final[c.rule]) this.collect(c.ret, returns, out);
    }
  }

  private move(top: NodeId, returns: readonly NodeId[]): Move {
    const key = moveKey(top, returns);
    let m = this.internedMoves.get(key);
    if (!m) this.internedMoves.set(key, (m = { top, returns }));
    return m;
  }
}

function moveKey(top: NodeId, returns: readonly NodeId[]): string {
  return returns.length === 0 ? String(top) : `${top}<${returns.join(',')}`;
}

/** final(n) = marked final, or an epsilon or an empty call leads to a final node. */
function finalClosure(nodes: readonly BuildNode[], slicer: Slicer): Generator<void, Uint8Array> {
  return leastFixpoint(
    slicer,
    nodes,
    (n) => n.final,
    (n, set) => n.eps.some((t) => set[t]) || n.calls.some((c) => set[c.rule] && set[c.ret]),
    (n) => [...n.eps, ...n.calls.flatMap((c) => [c.rule, c.ret])],
  );
}

/** Nodes from which the rule can be finished (after any calls in between finish). */
function productiveNodes(nodes: readonly BuildNode[], final: Uint8Array, slicer: Slicer): Generator<void, Uint8Array> {
  return leastFixpoint(
    slicer,
    nodes,
    (_, i) => final[i] === 1,
    (n, set) => n.bytes.some((e) => set[e.to]) || n.eps.some((t) => set[t]) || n.calls.some((c) => set[c.rule] && set[c.ret]),
    (n) => [...n.bytes.map((e) => e.to), ...n.eps, ...n.calls.flatMap((c) => [c.rule, c.ret])],
  );
}

/**
 * The smallest set of nodes holding the seeds and closed under `holds`, by a worklist: a
 * node is looked at again only when a node it depends on joins the set, so the cost is
 * linear in the edges (sweeping all nodes until nothing changes took one sweep per step of
 * the longest chain, quadratic for a string with a large maxLength).
 */
function* leastFixpoint(
  slicer: Slicer,
  nodes: readonly BuildNode[],
  seed: (n: BuildNode, i: number) => boolean,
  holds: (n: BuildNode, set: Uint8Array) => boolean,
  dependsOn: (n: BuildNode) => NodeId[],
): Generator<void, Uint8Array> {
  const set = new Uint8Array(nodes.length);
  const dependents: NodeId[][] = nodes.map(() => []);
  for (let i = 0; i < nodes.length; i++) {
    if (slicer.due()) yield;
    for (const d of dependsOn(nodes[i]!)) dependents[d]!.push(i);
  }
  const work: NodeId[] = [];
  nodes.forEach((n, i) => {
    if (seed(n, i)) {
      set[i] = 1;
      work.push(i);
    }
  });
  while (work.length > 0) {
    if (slicer.due()) yield;
    for (const i of dependents[work.pop()!]!) {
      if (set[i] || !holds(nodes[i]!, set)) continue;
      set[i] = 1;
      work.push(i);
    }
  }
  return set;
}

/**
 * A cycle of edges that consume nothing (epsilons, calls, and returns from rules that may
 * match nothing) would make a move table infinite: refused when the grammar is built, not
 * found in the middle of a request.
 */
function* checkNoLeftRecursion(nodes: readonly BuildNode[], final: Uint8Array, slicer: Slicer): Generator<void, void> {
  const successors = (n: BuildNode): NodeId[] => [
    ...n.eps,
    ...n.calls.map((c) => c.rule),
    ...n.calls.filter((c) => final[c.rule]).map((c) => c.ret),
  ];
  // 0 unseen, 1 on the current path, 2 done
  const color = new Uint8Array(nodes.length);
  for (let root = 0; root < nodes.length; root++) {
    if (color[root]) continue;
    const stack: { node: NodeId; next: NodeId[]; i: number }[] = [{ node: root, next: successors(nodes[root]!), i: 0 }];
    color[root] = 1;
    while (stack.length > 0) {
      if (slicer.due()) yield;
      const top = stack[stack.length - 1]!;
      if (top.i === top.next.length) {
        color[top.node] = 2;
        stack.pop();
        continue;
      }
      const to = top.next[top.i++]!;
      if (color[to] === 1)
        throw new GrammarError(
          'response_format: the schema refers to itself before any value is written (a $ref cycle), which no value can end',
        );
      if (color[to] === 0) {
        color[to] = 1;
        stack.push({ node: to, next: successors(nodes[to]!), i: 0 });
      }
    }
  }
}
