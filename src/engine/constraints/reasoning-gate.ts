/**
 * A response format for a thinking model, which writes `<think> … </think>` before its
 * answer: the format applies to the answer only, as vLLM applies a structured-output grammar
 * only once its reasoning parser sees the reasoning end. While the model reasons, no mask
 * applies (the reasoning is free text and costs nothing to constrain); once the text holds
 * the end tag, what follows must be the format's text.
 *
 * The output may begin inside reasoning (the prompt opened it: DeepSeek-R1's and newer
 * Qwen3 templates end the generation prompt with `<think>\n`), or it may open reasoning
 * itself with the start tag as its very first text (Qwen3's first template). In the second
 * case the first tokens may be the start tag or the format's first text, and the mask allows
 * both until the text decides; output that does not open with the tag is the answer from
 * its first byte. The server's reasoning parser reads the output by the same rules, so the
 * text this constrains is the text it returns as content.
 *
 * Tags are matched in the bytes the detokenizer writes, so a tag the tokenizer holds as one
 * added token (Qwen3's `<think>`, id 151667) and one spelled out in several tokens are both
 * found.
 */
import { AutoGlmError } from '../../errors.js';
import type { ReasoningTags } from '../types.js';
import { maskWords } from './mask-walk.js';
import { bytesOfToken } from './token-bytes.js';
import type { ConstraintVocabulary, OutputConstraint, TokenConstraint } from './token-constraint.js';

type Phase =
  /** The start tag may still come: `opened` bytes of it are written (the format may still be what comes instead, while `answerAlive`). */
  | 'opening'
  /** Inside the reasoning: looking for the end tag. */
  | 'reasoning'
  /** The answer: the format's constraint decides. */
  | 'answer';

const enc = new TextEncoder();
/** JSON's whitespace: what may sit between the end tag and the answer inside one token, left out of the format's view. */
const JSON_WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

export class ReasoningGate implements OutputConstraint {
  private phase: Phase;
  private readonly start: Uint8Array;
  private readonly end: Uint8Array;
  /** Bytes of the start tag written so far (phase 'opening'). */
  private opened = 0;
  /** While opening: the text so far also fits the format, so the answer may begin here. */
  private answerAlive = true;
  /** The last bytes of the reasoning (fewer than the end tag has): an end tag split across tokens is found. */
  private tail: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly answer: TokenConstraint,
    private readonly tags: ReasoningTags,
    private readonly vocabulary: ConstraintVocabulary,
  ) {
    this.start = enc.encode(tags.start);
    this.end = enc.encode(tags.end);
    this.phase = tags.startsInside ? 'reasoning' : 'opening';
  }

  fork(): ReasoningGate {
    const copy = new ReasoningGate(this.answer.fork(), this.tags, this.vocabulary);
    copy.phase = this.phase;
    copy.opened = this.opened;
    copy.answerAlive = this.answerAlive;
    // replaced, never changed in place
    copy.tail = this.tail;
    return copy;
  }

  mask(): Uint32Array | null {
    switch (this.phase) {
      case 'reasoning':
        return null;
      case 'answer':
        return this.answer.mask();
      case 'opening': {
        const tag = this.startTagMask();
        if (!this.answerAlive) return tag;
        const both = new Uint32Array(this.answer.mask());
        for (let w = 0; w < both.length; w++) both[w]! |= tag[w]!;
        return both;
      }
    }
  }

  accept(tokenId: number): void {
    if (this.phase === 'answer') return this.answer.accept(tokenId);
    const bytes = this.writtenBytes(tokenId);
    if (this.phase === 'reasoning') return this.reason(bytes);
    // opening: the token continues the start tag, or begins (continues) the answer
    const rest = this.start.subarray(this.opened);
    if (bytes.length > 0 && startsWith(bytes, rest)) {
      this.phase = 'reasoning';
      // the answer comes after the reasoning, from its own start
      this.answer.restart();
      return this.reason(bytes.subarray(rest.length));
    }
    const continuesTag = bytes.length > 0 && startsWith(rest, bytes);
    // a token without text (EOS) is the answer's to judge
    const continuesAnswer = this.answerAlive && (bytes.length === 0 ? (this.answer.accept(tokenId), true) : this.answer.acceptBytes(bytes));
    if (!continuesTag) {
      if (!continuesAnswer)
        throw new AutoGlmError(
          'internal_error',
          `constrained decoding: token ${tokenId} neither opens the reasoning nor begins the answer`,
        );
      this.phase = 'answer';
      return;
    }
    this.opened += bytes.length;
    this.answerAlive = continuesAnswer;
  }

  /** Reasoning text: free, until the end tag; what follows the tag in the same token is the answer's first text. */
  private reason(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const seen = concat(this.tail, bytes);
    const at = indexOf(seen, this.end);
    if (at < 0) {
      this.tail = seen.slice(Math.max(0, seen.length - (this.end.length - 1)));
      return;
    }
    this.phase = 'answer';
    let after = seen.subarray(at + this.end.length);
    // the layout after the tag (Qwen writes "\n\n") is no part of the answer's format
    while (after.length > 0 && JSON_WHITESPACE.has(after[0]!)) after = after.subarray(1);
    if (after.length > 0 && !this.answer.acceptBytes(after))
      throw new AutoGlmError('internal_error', 'constrained decoding: the text after the reasoning does not begin the answer');
  }

  /** Every token that continues the start tag from where it stands (tag tokens are few: looked up once per place in the tag). */
  private startTagMask(): Uint32Array {
    const rest = this.start.subarray(this.opened);
    const key = `reasoning-start:${[...rest].join(',')}`;
    const { masks, tokens } = this.vocabulary;
    const cached = masks.get(key);
    if (cached) return cached;
    const mask = new Uint32Array(maskWords(tokens.count));
    for (let id = 0; id < tokens.count; id++) {
      const b = this.writtenBytes(id);
      if (b.length > 0 && (startsWith(rest, b) || startsWith(b, rest))) mask[id >>> 5]! |= 1 << (id & 31);
    }
    masks.set(key, mask);
    return mask;
  }

  /** The bytes a token adds to the text, as the detokenizer writes it (non-special added tokens included). */
  private writtenBytes(id: number): Uint8Array {
    const { tokens, addedTokenBytes } = this.vocabulary;
    const own = id >= 0 && id < tokens.count ? bytesOfToken(tokens, id) : new Uint8Array(0);
    return own.length > 0 ? own : (addedTokenBytes.get(id) ?? own);
  }
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > bytes.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function indexOf(bytes: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
