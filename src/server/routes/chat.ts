import type { FastifyReply, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import type { ChatMessage } from '../../engine/types.js';
import { budgetTokens, choiceRequest, parseCommon, type CommonBody } from '../openai-request.js';
import type { RouteContext } from './context.js';
import { chatLogprobs } from './logprobs-format.js';
import { serveGeneration, type ResponseShape } from './serve-generation.js';

type ContentPart = { type: string; text?: string };

/** A chat message as the schema admits it (chat completions and /tokenize alike). */
export type BodyMessage = { role: string; content?: string | ContentPart[] | null; name?: string; [k: string]: unknown };

interface ChatBody extends CommonBody {
  messages: BodyMessage[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  chat_template_kwargs?: Record<string, unknown> | null;
}

/** POST /v1/chat/completions */
export async function chatCompletions(ctx: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<object | undefined> {
  const arrivalMs = performance.now();
  const body = request.body as ChatBody;
  const engine = ctx.checkModel(body.model, true);
  const maxTokensParam = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const params = parseCommon(body, body.max_completion_tokens ?? body.max_tokens, ctx.limits);
  const withLogprobs = body.logprobs === true;
  const topLogprobs = body.top_logprobs ?? 0;
  // As OpenAI does: alternatives without logprobs would be silently dropped otherwise.
  if (topLogprobs > 0 && !withLogprobs)
    throw new AutoGlmError('invalid_request', 'top_logprobs requires logprobs: true.', { param: 'top_logprobs' });
  const messages = chatMessages(body.messages);
  const kwargs = body.chat_template_kwargs ?? undefined;
  const prompt = await ctx.tokenizer.chat(engine, messages, kwargs);
  const maxTokens = budgetTokens({
    promptTokens: prompt.length,
    resumedTokens: params.resumeTokenIds?.length ?? 0,
    requestedMaxTokens: params.requestedMaxTokens,
    contextLength: engine.contextLength,
    limits: ctx.limits,
    promptParam: 'messages',
    maxTokensParam,
  });
  const choices = Array.from({ length: params.n }, (_, i) => ({
    index: i,
    request: choiceRequest(params, prompt, maxTokens, i, { logprobs: withLogprobs, topLogprobs, requestId: request.id }),
  }));

  const id = `chatcmpl-${request.id}`;
  const created = Math.floor(Date.now() / 1000);
  const model = ctx.modelName();
  const head = { id, created, model, system_fingerprint: null };
  const tokenIds = (ids: number[]): object => (params.returnTokenIds ? { token_ids: ids } : {});
  const shape: ResponseShape = {
    opening: (index) => ({
      ...head,
      object: 'chat.completion.chunk',
      choices: [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null, ...tokenIds([]) }],
      ...(params.includeUsage ? { usage: null } : {}),
    }),
    chunk: async (c) => ({
      ...head,
      object: 'chat.completion.chunk',
      choices: [
        {
          index: c.index,
          delta: c.text === '' ? {} : { content: c.text },
          logprobs: withLogprobs ? chatLogprobs(c.logprobs, topLogprobs) : null,
          finish_reason: c.finishReason,
          ...tokenIds(c.tokenIds),
        },
      ],
      ...(params.includeUsage ? { usage: null } : {}),
    }),
    usageChunk: (usage) => ({ ...head, object: 'chat.completion.chunk', choices: [], usage }),
    final: async (outcomes, usage) => ({
      ...head,
      object: 'chat.completion',
      choices: outcomes.map((o) => ({
        index: o.index,
        message: { role: 'assistant', content: o.text, refusal: null },
        logprobs: withLogprobs ? chatLogprobs(o.logprobs, topLogprobs) : null,
        finish_reason: o.finishReason,
        ...tokenIds(o.tokenIds),
      })),
      usage,
    }),
  };
  return serveGeneration(
    ctx,
    request,
    reply,
    { engine, choices, stream: params.stream, includeUsage: params.includeUsage, withLogprobs, promptTokens: [prompt.length], arrivalMs },
    shape,
  );
}

/** The messages the chat template gets: content parts joined into one string. */
export function chatMessages(messages: BodyMessage[]): ChatMessage[] {
  return messages.map((m) => ({ ...m, content: flattenContent(m.content) }));
}

/** OpenAI content parts: only text parts carry meaning for a text model. */
function flattenContent(content: string | ContentPart[] | null | undefined): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => (p.type === 'text' ? (p.text ?? '') : '')).join('');
}
