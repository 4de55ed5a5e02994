import type { TopLogprob } from '../../engine/types.js';
import type { TokenLogprob } from '../generation.js';

const bytesOf = (s: string): number[] => [...Buffer.from(s, 'utf8')];

/** Chat completions' logprobs: `{content: [{token, logprob, bytes, top_logprobs}]}`. */
export function chatLogprobs(entries: TokenLogprob[], topN: number): { content: object[] } {
  const top = (t: TopLogprob[]): object[] => t.slice(0, topN).map((x) => ({ token: x.token, logprob: x.logprob, bytes: bytesOf(x.token) }));
  return {
    content: entries.map((e) => ({ token: e.token, logprob: e.logprob, bytes: bytesOf(e.token), top_logprobs: top(e.top) })),
  };
}

/** Legacy completions' logprobs: parallel arrays, top alternatives as `{token: logprob}` maps. */
export function completionLogprobs(
  entries: TokenLogprob[],
  topN: number,
  textOffsetStart: number,
): { tokens: string[]; token_logprobs: number[]; top_logprobs: Record<string, number>[]; text_offset: number[] } {
  let offset = textOffsetStart;
  const textOffset: number[] = [];
  for (const e of entries) {
    textOffset.push(offset);
    offset += e.token.length;
  }
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top.slice(0, topN).map((t) => [t.token, t.logprob]))),
    text_offset: textOffset,
  };
}
