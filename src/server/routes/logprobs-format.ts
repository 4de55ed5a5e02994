import type { PromptTokenLogprob, TopLogprob } from '../../engine/types.js';
import type { TokenLogprob } from '../generation.js';

/**
 * Chat completions' logprobs: `{content: [{token, logprob, bytes, top_logprobs}]}`. A token
 * that is only part of a UTF-8 character has its own bytes here (a client joins them to
 * rebuild the text) and the string `bytes:\xf0\x9f`, as OpenAI writes such tokens.
 */
export function chatLogprobs(entries: TokenLogprob[], topN: number): { content: object[] } {
  const top = (t: TopLogprob[]): object[] => t.slice(0, topN).map((x) => ({ token: x.token, logprob: x.logprob, bytes: x.bytes }));
  return {
    content: entries.map((e) => ({ token: e.token, logprob: e.logprob, bytes: e.bytes, top_logprobs: top(e.top ?? []) })),
  };
}

/**
 * vLLM's prompt_logprobs: per prompt token (null for the first, which nothing predicts) a
 * map from token id to `{logprob, rank, decoded_token}` holding the top `topN` alternatives
 * (ranked 1..topN) and the prompt token itself with its own rank.
 */
export function promptLogprobsBody(
  entries: readonly (PromptTokenLogprob | null)[],
  topN: number,
): (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[] {
  return entries.map((e) => {
    if (e === null) return null;
    const map: Record<string, { logprob: number; rank: number; decoded_token: string }> = {};
    e.topLogprobs.slice(0, topN).forEach((t, i) => (map[t.tokenId] = { logprob: t.logprob, rank: i + 1, decoded_token: t.token }));
    map[e.tokenId] = { logprob: e.logprob, rank: e.rank, decoded_token: e.token };
    return map;
  });
}

/** A body's `prompt_logprobs` field when the request asked for them (`topN` given), else no field. */
export function promptLogprobsField(
  entries: readonly (PromptTokenLogprob | null)[] | undefined,
  topN: number | undefined,
): { prompt_logprobs?: ReturnType<typeof promptLogprobsBody> } {
  return topN === undefined ? {} : { prompt_logprobs: promptLogprobsBody(entries ?? [], topN) };
}

/**
 * Legacy completions' logprobs: parallel arrays, top alternatives as `{token: logprob}` maps.
 * `text_offset` is where each token's text begins in the returned text, counted from
 * `textOffsetStart` in characters (code points, as Python's str counts them); a token that
 * continues a character another began is at that character's offset. An echoed prompt's
 * first token has null for its logprob and its alternatives, as in OpenAI's answers.
 */
export function completionLogprobs(
  entries: TokenLogprob[],
  topN: number,
  textOffsetStart: number,
): { tokens: string[]; token_logprobs: (number | null)[]; top_logprobs: (Record<string, number> | null)[]; text_offset: number[] } {
  const charOfByte = characterIndexOfBytes(Uint8Array.from(entries.flatMap((e) => e.bytes)));
  const textOffset: number[] = [];
  let byte = 0;
  for (const e of entries) {
    textOffset.push(textOffsetStart + charOfByte[byte]!);
    byte += e.bytes.length;
  }
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => (e.top === null || e.logprob === null ? null : topMap(e.top.slice(0, topN), e.token, e.logprob))),
    text_offset: textOffset,
  };
}

/**
 * Alternatives by token string, and the sampled token whether or not it is one of them (so
 * up to logprobs + 1 entries, and with logprobs 0 the sampled token alone: OpenAI's and
 * vLLM's shape). Should two tokens share a string, the likelier (listed first) keeps it.
 */
function topMap(top: TopLogprob[], token: string, logprob: number): Record<string, number> {
  const map: Record<string, number> = {};
  for (const t of [...top, { token, logprob }]) if (!Object.hasOwn(map, t.token)) map[t.token] = t.logprob;
  return map;
}

/**
 * For each byte of a UTF-8 text, and one past its end, the index of the character it
 * belongs to in the text TextDecoder makes of it (WHATWG's decoder, the one the tokenizer's
 * decode uses): an invalid or cut-off sequence is one U+FFFD, a byte that breaks a sequence
 * starts the next character.
 */
function characterIndexOfBytes(bytes: Uint8Array): Uint32Array {
  const out = new Uint32Array(bytes.length + 1);
  let chars = 0;
  let needed = 0;
  let seen = 0;
  let lower = 0x80;
  let upper = 0xbf;
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]!;
    if (needed === 0) {
      out[i++] = chars;
      if (b >= 0xc2 && b <= 0xdf) needed = 1;
      else if (b >= 0xe0 && b <= 0xef) {
        needed = 2;
        if (b === 0xe0) lower = 0xa0;
        if (b === 0xed) upper = 0x9f;
      } else if (b >= 0xf0 && b <= 0xf4) {
        needed = 3;
        if (b === 0xf0) lower = 0x90;
        if (b === 0xf4) upper = 0x8f;
      } else chars++; // ASCII, or a byte no character starts with (one U+FFFD)
      continue;
    }
    if (b < lower || b > upper) {
      // the sequence so far is one U+FFFD; this byte is looked at again as a start
      chars++;
      needed = seen = 0;
      lower = 0x80;
      upper = 0xbf;
      continue;
    }
    lower = 0x80;
    upper = 0xbf;
    out[i++] = chars;
    if (++seen === needed) {
      chars++;
      needed = seen = 0;
    }
  }
  out[bytes.length] = needed > 0 ? chars + 1 : chars;
  return out;
}
