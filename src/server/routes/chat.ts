import type { FastifyReply, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import type { InferenceEngine } from '../../engine/types.js';
import { budgetTokens, choiceRequest, parseCommon, type CommonBody, type CommonParams } from '../openai-request.js';
import { ChoiceToolCalls } from '../tool-calls/choice-tool-calls.js';
import { chatTemplateSourceOf, generatedText } from '../tool-calls/model-tokenizer.js';
import { createToolCallParser } from '../tool-calls/parsers.js';
import { planToolCalling, templateKwargs, type ToolCallingPlan, type ToolRequestFields } from '../tool-calls/request-tools.js';
import { chatMessages, type BodyMessage } from './chat-messages.js';
import { chatResponseShape } from './chat-shape.js';
import type { RouteContext } from './context.js';
import { serveGeneration } from './serve-generation.js';

interface ChatBody extends CommonBody, ToolRequestFields {
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
  const common = parseCommon(body, body.max_completion_tokens ?? body.max_tokens, ctx.limits);
  const withLogprobs = body.logprobs === true;
  const topLogprobs = body.top_logprobs ?? 0;
  // As OpenAI does: alternatives without logprobs would be silently dropped otherwise.
  if (topLogprobs > 0 && !withLogprobs)
    throw new AutoGlmError('invalid_request', 'top_logprobs requires logprobs: true.', { param: 'top_logprobs' });
  const tools = planToolCalling(body, { templateSource: chatTemplateSourceOf(engine), parser: ctx.toolCallParser });
  const params = withForcedCalls(common, tools);
  const messages = chatMessages(body.messages);
  const prompt = await ctx.tokenizer.chat(engine, messages, templateKwargs(body.chat_template_kwargs, tools));
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

  const shape = chatResponseShape({
    head: { id: `chatcmpl-${request.id}`, created: Math.floor(Date.now() / 1000), model: ctx.modelName(), system_fingerprint: null },
    includeUsage: params.includeUsage,
    returnTokenIds: params.returnTokenIds,
    withLogprobs,
    topLogprobs,
    toolCalls: await toolCallReaders(engine, tools, params.n, params.resumeTokenIds),
  });
  return serveGeneration(
    ctx,
    request,
    reply,
    { engine, choices, stream: params.stream, includeUsage: params.includeUsage, withLogprobs, promptTokens: [prompt.length], arrivalMs },
    shape,
  );
}

/**
 * A choice that must call (tool_choice 'required' or a named function) is decoded under the
 * tool-call constraint in place of a response_format: both at once would ask for two
 * different texts, so that is refused.
 */
function withForcedCalls(params: CommonParams, tools: ToolCallingPlan): CommonParams {
  if (tools.forcedCalls === undefined) return params;
  const format = params.responseFormat;
  if (format !== undefined && format.type !== 'text')
    throw new AutoGlmError(
      'invalid_request',
      `response_format ${format.type} cannot be combined with a tool_choice that requires a call: the output is the tool calls. ` +
        "Send one of them, or tool_choice 'auto'.",
      { param: 'response_format' },
    );
  return { ...params, responseFormat: tools.forcedCalls };
}

/**
 * One reader per choice when calls are to be read. A resumed stream's reader first replays
 * the text of the tokens already sent, so a call begun on the worker that failed is
 * completed here, numbered after the calls that worker sent.
 */
async function toolCallReaders(
  engine: InferenceEngine,
  tools: ToolCallingPlan,
  n: number,
  resumeTokenIds: number[] | undefined,
): Promise<Map<number, ChoiceToolCalls> | null> {
  const format = tools.format;
  if (format === null) return null;
  const readers = new Map(
    Array.from({ length: n }, (_, i) => [
      i,
      new ChoiceToolCalls(createToolCallParser(format), { parallelToolCalls: tools.parallelToolCalls }),
    ]),
  );
  if (resumeTokenIds) {
    const sent = await generatedText(engine, resumeTokenIds);
    for (const reader of readers.values()) reader.replay(sent);
  }
  return readers;
}
