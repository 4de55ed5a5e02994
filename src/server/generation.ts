import { setMaxListeners } from 'node:events';
import type {
  FinishReason,
  GenerateRequest,
  InferenceEngine,
  LogprobToken,
  PromptTokenLogprob,
  TokenEvent,
  TopLogprob,
  Usage,
} from '../engine/types.js';
import type { GenerationTimer, GenerationTiming } from './metrics.js';

/** One choice of a request: its own GenerateRequest (prompt already tokenized). */
export interface ChoiceSpec {
  index: number;
  /** Which of the request's prompts it continues (the GenerationPlan's promptTokens index). */
  promptIndex: number;
  request: GenerateRequest & { prompt: number[] };
  /**
   * OpenAI's echo: this text (the prompt) comes first, as a chunk of its own, with logprobs
   * an entry per prompt token (request.promptLogprobs set; the first token has none).
   * `only`: max_tokens 0, the prompt alone (the engine generates one token, which is dropped).
   */
  echo?: { text: string; only: boolean };
}

export interface TokenLogprob extends LogprobToken {
  tokenId: number;
  /** null for an echoed prompt's first token, which nothing predicts. */
  logprob: number | null;
  top: TopLogprob[] | null;
}

/** Text that became final, with the ids (and logprobs) of the tokens that produced it. */
export interface ChoiceChunk {
  index: number;
  text: string;
  tokenIds: number[];
  logprobs: TokenLogprob[];
  finishReason: Exclude<FinishReason, 'cancelled'> | null;
}

export interface ChoiceOutcome {
  index: number;
  text: string;
  tokenIds: number[];
  logprobs: TokenLogprob[];
  /** With the request's promptLogprobs: one per prompt token, null for the first. */
  promptLogprobs?: (PromptTokenLogprob | null)[];
  finishReason: Exclude<FinishReason, 'cancelled'>;
  usage: Usage;
  timing: GenerationTiming;
}

export interface RunChoicesOptions {
  engine: InferenceEngine;
  choices: ChoiceSpec[];
  /** Aborted on client disconnect or drain timeout; cancels every choice. */
  signal: AbortSignal;
  startTimer: () => GenerationTimer;
  /** Called for each chunk as it becomes available (streaming); awaited, so writes keep order. */
  onChunk?: (chunk: ChoiceChunk) => void | Promise<void>;
  withLogprobs: boolean;
}

/**
 * Runs every choice concurrently on the engine. Tokens whose text is still pending (a
 * partial UTF-8 character, a possible stop string) are held back and delivered with the
 * next chunk that has text, so each chunk's token ids are exactly the tokens behind its
 * text and their concatenation is the whole completion (what the gateway resumes from).
 * The first failure cancels the other choices and is rethrown.
 */
export async function runChoices(options: RunChoicesOptions): Promise<ChoiceOutcome[]> {
  // Not AbortSignal.any: on Node 20 every signal it composed stayed reachable (with the
  // engine's listener on it) after its request ended, about 1.4 KB of heap per request
  // served (a soak of 40,884 requests; heap snapshots: one EventTarget, Listener and Set
  // per request). A local controller that follows the request's signal is released here.
  const local = new AbortController();
  // every choice's generation listens on it (n up to maxChoices): Node warns past 10
  setMaxListeners(options.choices.length + 10, local.signal);
  const follow = (): void => local.abort(options.signal.reason);
  if (options.signal.aborted) follow();
  else options.signal.addEventListener('abort', follow, { once: true });
  try {
    // every choice has the same format: compiled once, in slices, before any is admitted
    await options.engine.precompileResponseFormat?.(options.choices[0]?.request.responseFormat);
    return await Promise.all(options.choices.map((c) => runOne(c, local.signal, options)));
  } catch (e) {
    local.abort(e);
    throw e;
  } finally {
    options.signal.removeEventListener('abort', follow);
  }
}

async function runOne(choice: ChoiceSpec, signal: AbortSignal, options: RunChoicesOptions): Promise<ChoiceOutcome> {
  const timer = options.startTimer();
  const resumed = choice.request.resumeTokenIds?.length ?? 0;
  const outcome: Omit<ChoiceOutcome, 'timing'> = {
    index: choice.index,
    text: '',
    tokenIds: [],
    logprobs: [],
    finishReason: 'length',
    usage: { promptTokens: choice.request.prompt.length, completionTokens: resumed, cachedPromptTokens: 0 },
  };
  let pending: ChoiceChunk = emptyChunk(choice.index);
  let finish: FinishReason | undefined;
  let echoed = false;
  timer.admitted();
  for await (const event of options.engine.generate({ ...choice.request, signal })) {
    if (event.promptLogprobs) outcome.promptLogprobs = event.promptLogprobs;
    if (choice.echo && !echoed) {
      // the prompt as a chunk of its own (no token ids: the gateway resumes from generated ids)
      echoed = true;
      const chunk = await echoChunk(choice, event, options);
      outcome.text += chunk.text;
      outcome.logprobs.push(...chunk.logprobs);
      if (choice.echo.only) {
        // max_tokens 0: the one token generated to get here is not part of the answer
        timer.token();
        outcome.usage = { ...(event.usage ?? outcome.usage), completionTokens: 0 };
        chunk.finishReason = 'length';
        await options.onChunk?.(chunk);
        return { ...outcome, timing: timer.finished('length', outcome.usage.promptTokens, 0) };
      }
      await options.onChunk?.(chunk);
    }
    timer.token();
    pending.text += event.text;
    pending.tokenIds.push(event.tokenId);
    if (options.withLogprobs && event.logprob !== undefined) {
      pending.logprobs.push({
        tokenId: event.tokenId,
        ...(event.logprobToken ?? (await decodedToken(options.engine, event.tokenId))),
        logprob: event.logprob,
        top: event.topLogprobs ?? [],
      });
    }
    if (event.usage) outcome.usage = event.usage;
    if (event.finishReason) finish = event.finishReason;
    if (finish === 'cancelled') break;
    if (finish !== undefined) pending.finishReason = finish;
    if (pending.text !== '' || finish !== undefined) {
      outcome.text += pending.text;
      outcome.tokenIds.push(...pending.tokenIds);
      outcome.logprobs.push(...pending.logprobs);
      await options.onChunk?.(pending);
      pending = emptyChunk(choice.index);
    }
    if (finish !== undefined) break;
  }
  if (signal.aborted || finish === 'cancelled') throw signal.reason ?? new Error('cancelled');
  if (finish === undefined) {
    // The engine ended without a finishing event (e.g. zero tokens left): close the choice.
    pending.finishReason = 'length';
    outcome.text += pending.text;
    outcome.tokenIds.push(...pending.tokenIds);
    await options.onChunk?.(pending);
  }
  outcome.finishReason = finish === 'stop' ? 'stop' : 'length';
  // The engine counts resumed tokens as generated; make sure usage never undercounts them.
  outcome.usage = {
    ...outcome.usage,
    completionTokens: Math.max(outcome.usage.completionTokens, resumed + outcome.tokenIds.length),
  };
  const timing = timer.finished(outcome.finishReason, outcome.usage.promptTokens, outcome.tokenIds.length);
  return { ...outcome, timing };
}

/** The echoed prompt's chunk: its text, and with logprobs an entry per prompt token (the first without a logprob). */
async function echoChunk(choice: ChoiceSpec, event: TokenEvent, options: RunChoicesOptions): Promise<ChoiceChunk> {
  const chunk = emptyChunk(choice.index);
  chunk.text = choice.echo!.text;
  if (!options.withLogprobs) return chunk;
  const scores = event.promptLogprobs ?? [];
  const first = choice.request.prompt[0]!;
  const firstToken = options.engine.logprobToken?.(first) ?? (await decodedToken(options.engine, first));
  chunk.logprobs.push({ tokenId: first, ...firstToken, logprob: null, top: null });
  for (const s of scores.slice(1)) {
    if (s) chunk.logprobs.push({ tokenId: s.tokenId, token: s.token, bytes: s.bytes, logprob: s.logprob, top: s.topLogprobs });
  }
  return chunk;
}

function emptyChunk(index: number): ChoiceChunk {
  return { index, text: '', tokenIds: [], logprobs: [], finishReason: null };
}

/** For an engine whose events do not carry the token as logprobs report it: its decoded text. */
async function decodedToken(engine: InferenceEngine, tokenId: number): Promise<LogprobToken> {
  const token = await engine.detokenize([tokenId]);
  return { token, bytes: [...Buffer.from(token, 'utf8')] };
}
