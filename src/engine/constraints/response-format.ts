/**
 * The engine's entry to constrained decoding: compiles a request's response_format (JSON,
 * a JSON Schema, a regex, a list of choices, or the server's tool calls; once
 * per distinct format: compiled grammars are kept, least recently used out) and gives each
 * request its own TokenConstraint over the shared grammar, vocabulary and mask cache.
 *
 * The vocabulary is read as bytes and put in a trie on first use (prepare() does it ahead:
 * about a second for a 150k vocabulary, which a server's warm-up pays rather than its first
 * JSON request).
 */
import { AutoGlmError, isAutoGlmError } from '../../errors.js';
import type { ReasoningTags, ResponseFormat } from '../types.js';
import { GrammarAutomaton } from './automaton.js';
import { GrammarError, type Grammar } from './grammar.js';
import { JsonRules } from './json-rules.js';
import { compileJsonSchemaSteps } from './json-schema.js';
import { compileChoicesSteps, compileRegexSteps } from './regex.js';
import { runToEnd } from './slices.js';
import { MaskCache } from './mask-cache.js';
import { bytesOfToken, tokenBytesOf, type TokenBytes, type VocabularySource } from './token-bytes.js';
import { ReasoningGate } from './reasoning-gate.js';
import { TokenConstraint, type CompiledFormat, type ConstraintVocabulary, type OutputConstraint } from './token-constraint.js';
import { stringTokensOf } from './string-tokens.js';
import { TOOL_CALL_MARKERS, toolCallGrammarSteps } from './tool-call-grammar.js';
import { buildTokenTrie } from './token-trie.js';

export interface ResponseFormatOptions {
  vocabulary: VocabularySource;
  /** The model's vocabulary size (masks cover every id the sampler may draw). */
  vocabSize: number;
  eosTokenIds: readonly number[];
  /** Bound on cached masks (default 64 MiB). */
  maskCacheBytes?: number;
  /** Compiled formats kept (default 64). */
  formatCacheEntries?: number;
}

export class ResponseFormatConstraints {
  private vocabulary: ConstraintVocabulary | undefined;
  private unusable: AutoGlmError | undefined;
  /** The vocabulary read as bytes, or what reading it threw (built once; logprobs use it too). */
  private bytes: TokenBytes | { failed: unknown } | undefined;
  private readonly formats = new Map<string, CompiledFormat>();
  /** Formats refused (invalid_request), by key, most recent last. */
  private readonly refused = new Map<string, AutoGlmError>();
  private nextSerial = 0;

  constructor(private readonly options: ResponseFormatOptions) {}

  /**
   * The compiled format (null for plain text). A format that cannot be enforced is an
   * invalid_request naming response_format, thrown here, before the request is queued.
   */
  compile(format: ResponseFormat | undefined): CompiledFormat | null {
    if (format === undefined || format.type === 'text') return null;
    const key = formatKey(format);
    const known = this.cached(key, format);
    if (known) return known;
    try {
      return this.keep(key, compileGrammar(format));
    } catch (e) {
      throw this.refuse(key, format, e);
    }
  }

  /**
   * Compiles a format ahead of compile(), giving the event loop back every few ms: an
   * ambiguous pattern takes up to a second to be refused, and a schema (a response format's,
   * or tools' parameters) near the grammar's node limit 0.2-0.5 s to compile; inline, that
   * held a server's thread per request (other streams stalled, health probes and heartbeats
   * missed, a gateway ejecting the worker). The grammar, or the refusal, is cached for
   * compile(), which the request's admission then calls; this never throws. JSON mode, a
   * small fixed grammar, compiles in compile().
   */
  async precompile(format: ResponseFormat | undefined): Promise<void> {
    if (format === undefined || format.type === 'text' || format.type === 'json_object') return;
    const key = formatKey(format);
    if (this.refused.has(refusalKey(key, format)) || this.cached(key, format)) return;
    const steps = compileGrammarSteps(format);
    try {
      for (;;) {
        const next = steps.next();
        if (next.done) {
          this.keep(key, next.value);
          return;
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (e) {
      this.refuse(key, format, e);
    }
  }

  private cached(key: string, format: ResponseFormat): CompiledFormat | undefined {
    const refusal = this.refused.get(refusalKey(key, format));
    if (refusal) throw refusal;
    const known = this.formats.get(key);
    if (known) {
      this.formats.delete(key);
      this.formats.set(key, known);
    }
    return known;
  }

  private keep(key: string, grammar: Grammar): CompiledFormat {
    const compiled: CompiledFormat = { serial: this.nextSerial++, key, automaton: new GrammarAutomaton(grammar) };
    this.formats.set(key, compiled);
    trimOldest(this.formats, this.options.formatCacheEntries ?? 64);
    return compiled;
  }

  /** Remembers a format's refusal (a client repeating a pattern that takes a second to refuse pays once); returns it. */
  private refuse(key: string, format: ResponseFormat, e: unknown): unknown {
    if (isAutoGlmError(e, 'invalid_request')) {
      this.refused.set(refusalKey(key, format), e);
      trimOldest(this.refused, this.options.formatCacheEntries ?? 64);
    }
    return e;
  }

  /** A request's own constraint, at the start of the text. */
  constraint(format: CompiledFormat): TokenConstraint {
    return new TokenConstraint(format, this.prepare());
  }

  /** The constraint of a request whose output may reason first: the format applies to the answer after the reasoning. */
  constraintAfter(format: CompiledFormat, reasoning: ReasoningTags | undefined): OutputConstraint {
    const answer = this.constraint(format);
    return reasoning ? new ReasoningGate(answer, reasoning, this.prepare()) : answer;
  }

  /**
   * Reads the vocabulary as bytes and builds its trie, once. A vocabulary that cannot be
   * read so throws an invalid_request naming response_format, remembered and thrown again
   * for every later request rather than tried again each time.
   */
  prepare(): ConstraintVocabulary {
    if (this.vocabulary) return this.vocabulary;
    if (this.unusable) throw this.unusable;
    try {
      this.vocabulary = this.readVocabulary();
      return this.vocabulary;
    } catch (e) {
      this.unusable = isAutoGlmError(e)
        ? e
        : new AutoGlmError('internal_error', `response_format: cannot read the vocabulary: ${(e as Error)?.message}`, { cause: e });
      throw this.unusable;
    }
  }

  /**
   * Every token's bytes (the first part of prepare(), without its EOS check and trie), built
   * once and shared: logprobs report tokens by these bytes. Throws what reading them threw.
   */
  tokenBytes(): TokenBytes {
    if (this.bytes === undefined) {
      const { vocabulary, vocabSize } = this.options;
      try {
        this.bytes = tokenBytesOf(vocabulary, vocabSize, { admittedAddedTokens: TOOL_CALL_MARKERS });
      } catch (e) {
        this.bytes = { failed: e };
      }
    }
    if ('failed' in this.bytes) throw this.bytes.failed;
    return this.bytes;
  }

  private readVocabulary(): ConstraintVocabulary {
    const { vocabulary, vocabSize, eosTokenIds } = this.options;
    if (eosTokenIds.length === 0)
      throw new AutoGlmError('invalid_request', 'response_format: this model has no EOS token to end a constrained text with', {
        param: 'response_format',
      });
    const tokens = this.tokenBytes();
    return {
      tokens,
      addedTokenBytes: addedTokenBytesOf(vocabulary, vocabSize, tokens),
      trie: buildTokenTrie(tokens),
      strings: stringTokensOf(tokens),
      eosTokenIds,
      masks: new MaskCache(this.options.maskCacheBytes ?? 64 * 1024 * 1024),
    };
  }

  /** Mask cache counters (EngineStats, so /metrics; tests and measurements). */
  maskCacheStats(): { hits: number; misses: number; entries: number } {
    const m = this.vocabulary?.masks;
    return { hits: m?.hits ?? 0, misses: m?.misses ?? 0, entries: m?.size ?? 0 };
  }
}

/** A refusal names the request field its format came from: the same format sent as another field is refused anew. */
function refusalKey(key: string, format: ResponseFormat): string {
  const param = 'param' in format ? format.param : undefined;
  return `${param ?? ''}\u0000${key}`;
}

/** Drops a map's oldest entries (insertion order) down to `size`. */
function trimOldest(map: Map<string, unknown>, size: number): void {
  for (const k of map.keys()) {
    if (map.size <= size) break;
    map.delete(k);
  }
}

/** Added tokens outside `tokens` that the detokenizer writes as text (not special), as UTF-8. */
function addedTokenBytesOf(source: VocabularySource, vocabSize: number, tokens: TokenBytes): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const enc = new TextEncoder();
  for (let id = source.baseVocabSize; id < vocabSize; id++) {
    if (bytesOfToken(tokens, id).length > 0 || source.isSpecial(id)) continue;
    const text = source.tokenString(id);
    if (text) out.set(id, enc.encode(text));
  }
  return out;
}

function compileGrammar(format: Exclude<ResponseFormat, { type: 'text' }>): Grammar {
  return format.type === 'json_object' ? jsonObjectGrammar() : runToEnd(compileGrammarSteps(format));
}

/** The formats that compile in slices (precompile): all but JSON mode, whose grammar is small and fixed. */
type SlicedFormat = Exclude<ResponseFormat, { type: 'text' } | { type: 'json_object' }>;

function* compileGrammarSteps(format: SlicedFormat): Generator<void, Grammar> {
  switch (format.type) {
    case 'tool_calls':
      try {
        return yield* toolCallGrammarSteps(format);
      } catch (e) {
        // the node limit holds for all the tools' schemas together: it names none of them
        throw renamedParam('tools', e);
      }
    case 'regex':
      return yield* compileRegexSteps(format.pattern, { param: format.param });
    case 'choice':
      return yield* compileChoicesSteps(format.choices, { param: format.param });
    case 'json_schema':
      try {
        return yield* compileJsonSchemaSteps(format.schema);
      } catch (e) {
        throw renamedParam(format.param, e);
      }
  }
}

/** A schema's refusal (which names response_format) naming the parameter the schema came in instead (vLLM's guided_json). */
function renamedParam(param: string | undefined, e: unknown): unknown {
  if (param === undefined || !isAutoGlmError(e) || e.param !== 'response_format') return e;
  return new AutoGlmError(e.code, e.message.replace(/^response_format\b/, param), { param, cause: e });
}

/** json_object: one JSON object, any keys and values (OpenAI's JSON mode answers an object). */
export function jsonObjectGrammar(): Grammar {
  const rules = new JsonRules();
  return rules.document(rules.object());
}

/**
 * What identifies a format. Property order decides the output (properties are generated in
 * the schema's order), so the schema is written as given, not with sorted keys.
 */
export function formatKey(format: ResponseFormat): string {
  if (format.type === 'tool_calls') {
    const { syntax, parallel, forcedName, tools } = format;
    return `tool_calls:${schemaText([syntax, parallel, forcedName ?? null, tools.map((t) => [t.name, t.parameters ?? null])])}`;
  }
  if (format.type === 'regex') return `regex:${JSON.stringify(format.pattern)}`;
  if (format.type === 'choice') return `choice:${JSON.stringify(format.choices)}`;
  if (format.type !== 'json_schema') return format.type;
  return `json_schema:${schemaText(format.schema)}`;
}

function schemaText(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new GrammarError(`response_format: the schema is not JSON (${(e as Error).message})`);
  }
  if (text === undefined) throw new GrammarError('response_format: json_schema needs a schema');
  return text;
}
