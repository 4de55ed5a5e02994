import type { FastifyReply, FastifyRequest } from 'fastify';
import { generatedText } from '../tool-calls/model-tokenizer.js';
import { AutoGlmError } from '../../errors.js';
import type { InferenceEngine } from '../../engine/types.js';
import type { ChoiceSpec } from '../generation.js';
import { budgetTokens, choiceRequest, parseCommon, truncatedPrompt, type CommonBody } from '../openai-request.js';
import type { PromptTokenizer } from '../prompt-tokenizer.js';
import type { RouteContext } from './context.js';
import { completionLogprobs, promptLogprobsField } from './logprobs-format.js';
import { serveGeneration, type ResponseShape } from './serve-generation.js';

interface CompletionBody extends CommonBody {
  prompt: string | string[] | number[] | number[][];
  logprobs?: number | null;
  echo?: boolean | null;
  best_of?: number | null;
}

/** POST /v1/completions: one or several prompts (text or token ids), `n` choices each. */
export async function completions(ctx: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<object | undefined> {
  const arrivalMs = performance.now();
  const body = request.body as CompletionBody;
  const { engine, lora } = ctx.checkModel(body.model, true);
  refuseUnsupported(body, body.n ?? 1);
  // max_tokens 0 (with echo): the prompt alone; the engine still generates one token, dropped
  const echoOnly = body.max_tokens === 0;
  const params = parseCommon(body, echoOnly ? 1 : body.max_tokens, ctx.limits);
  // a resumed stream's prompt went out where the stream began (the gateway's failover)
  const echo = body.echo === true && !params.resumeTokenIds;
  const withLogprobs = body.logprobs !== null && body.logprobs !== undefined;
  const topLogprobs = body.logprobs ?? 0;
  // counted before tokenizing: 10^5 short prompts would hold the event loop for seconds
  if (promptCount(body.prompt) * params.n > ctx.limits.maxChoices)
    throw new AutoGlmError('invalid_request', `At most ${ctx.limits.maxChoices} prompts x n per request.`, { param: 'prompt' });
  const given = await tokenizePrompts(engine, ctx.tokenizer, body.prompt);
  const prompts = given.map((p) => truncatedPrompt(p, params.truncatePromptTokens));
  // echoed as given where it is text, decoded where it is token ids or was truncated
  const truncated = prompts.some((p, i) => p !== given[i]);
  const promptTexts = body.echo === true ? await promptTextsOf(engine, truncated ? prompts : body.prompt, prompts) : [];
  if (params.resumeTokenIds && prompts.length !== 1)
    throw new AutoGlmError('invalid_request', 'resume_token_ids requires a single prompt.', { param: 'resume_token_ids' });

  const choices: ChoiceSpec[] = [];
  prompts.forEach((prompt, p) => {
    const maxTokens = budgetTokens({
      promptTokens: prompt.length,
      resumedTokens: params.resumeTokenIds?.length ?? 0,
      requestedMaxTokens: params.requestedMaxTokens,
      contextLength: engine.contextLength,
      limits: ctx.limits,
      promptParam: 'prompt',
      maxTokensParam: 'max_tokens',
    });
    for (let i = 0; i < params.n; i++) {
      choices.push({
        index: p * params.n + i,
        promptIndex: p,
        request: {
          ...choiceRequest(params, prompt, maxTokens, i, { logprobs: withLogprobs, topLogprobs, requestId: request.id }),
          ...(lora !== undefined ? { lora } : {}),
          // echo's logprobs come from the prompt's scores too
          ...(echo && withLogprobs ? { promptLogprobs: Math.max(topLogprobs, params.promptLogprobs ?? 0) } : {}),
        },
        ...(echo ? { echo: { text: promptTexts[p]!, only: echoOnly } } : {}),
      });
    }
  });

  const head = {
    id: `cmpl-${request.id}`,
    object: 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model: lora ?? ctx.modelName(),
  };
  const tokenIds = (ids: number[]): object => (params.returnTokenIds ? { token_ids: ids } : {});
  // a resumed stream continues text the client already has (the gateway stitches it):
  // offsets go on from its end instead of starting again at 0
  const resumedChars = params.resumeTokenIds
    ? [...(await generatedText(engine, params.resumeTokenIds))].length + (body.echo === true ? [...promptTexts[0]!].length : 0)
    : 0;
  const streamedChars = new Map<number, number>();
  const shape: ResponseShape = {
    chunk: async (c) => {
      // text_offset counts characters (code points), not UTF-16 units
      const offset = streamedChars.get(c.index) ?? resumedChars;
      streamedChars.set(c.index, offset + [...c.text].length);
      return {
        ...head,
        choices: [
          {
            index: c.index,
            text: c.text,
            logprobs: withLogprobs ? completionLogprobs(c.logprobs, topLogprobs, offset) : null,
            finish_reason: c.finishReason,
            ...tokenIds(c.tokenIds),
          },
        ],
        ...(params.includeUsage ? { usage: null } : {}),
      };
    },
    usageChunk: (usage) => ({ ...head, choices: [], usage }),
    final: async (outcomes, usage) => ({
      ...head,
      choices: outcomes.map((o) => ({
        index: o.index,
        text: o.text,
        logprobs: withLogprobs ? completionLogprobs(o.logprobs, topLogprobs, resumedChars) : null,
        finish_reason: o.finishReason,
        ...tokenIds(o.tokenIds),
        ...promptLogprobsField(o.promptLogprobs, params.promptLogprobs),
      })),
      usage,
    }),
  };
  return serveGeneration(
    ctx,
    request,
    reply,
    {
      engine,
      choices,
      stream: params.stream,
      includeUsage: params.includeUsage,
      withLogprobs,
      promptTokens: prompts.map((p) => p.length),
      arrivalMs,
    },
    shape,
  );
}

/**
 * max_tokens 0 without echo (nothing to return), and OpenAI's best_of, which this server
 * does not implement: refused, naming them, rather than ignored. best_of equal to n asks
 * for nothing more than n.
 */
function refuseUnsupported(body: CompletionBody, n: number): void {
  if (body.max_tokens === 0 && body.echo !== true)
    throw new AutoGlmError('invalid_request', 'max_tokens must be at least 1 (0 only with echo, which returns the prompt alone).', {
      param: 'max_tokens',
    });
  const bestOf = body.best_of ?? n;
  if (bestOf < n) throw new AutoGlmError('invalid_request', `best_of (${bestOf}) must be at least n (${n}).`, { param: 'best_of' });
  if (bestOf > n)
    throw new AutoGlmError(
      'invalid_request',
      `best_of greater than n is not supported (best_of ${bestOf}, n ${n}): every choice generated is returned; ask for n choices instead.`,
      { param: 'best_of' },
    );
}

/** How many prompts a body names: a string or one token id list is one, a list of either is its length. */
function promptCount(prompt: CompletionBody['prompt']): number {
  return typeof prompt === 'string' || typeof prompt[0] === 'number' ? 1 : prompt.length;
}

/** Each prompt's text for echo: the string given, or the decoded ids (special tokens included, as they were sent). */
async function promptTextsOf(engine: InferenceEngine, prompt: CompletionBody['prompt'], ids: number[][]): Promise<string[]> {
  if (typeof prompt === 'string') return [prompt];
  if (typeof prompt[0] === 'string') return prompt as string[];
  return Promise.all(ids.map((p) => engine.detokenize(p, { param: 'prompt' })));
}

/** The four prompt forms OpenAI accepts, as token id lists (ids checked against the vocabulary by the engine). */
async function tokenizePrompts(engine: InferenceEngine, tokenizer: PromptTokenizer, prompt: CompletionBody['prompt']): Promise<number[][]> {
  if (typeof prompt === 'string') return [await tokenizer.text(engine, prompt)];
  if (prompt.length === 0) throw new AutoGlmError('invalid_request', 'prompt must not be empty.', { param: 'prompt' });
  const first = prompt[0];
  if (typeof first === 'number') return [prompt as number[]];
  if (typeof first === 'string') return Promise.all((prompt as string[]).map((p) => tokenizer.text(engine, p)));
  return prompt as number[][];
}
