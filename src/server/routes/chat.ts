import type { FastifyReply, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import type { InferenceEngine } from '../../engine/types.js';
import { budgetTokens, choiceRequest, parseCommon, truncatedPrompt, type CommonBody, type CommonParams } from '../openai-request.js';
import { formatParamOf } from '../structured-outputs.js';
import { ChoiceToolCalls } from '../tool-calls/choice-tool-calls.js';
import { chatTemplateSourceOf, generatedText } from '../tool-calls/model-tokenizer.js';
import { createToolCallParser } from '../tool-calls/parsers.js';
import { planToolCalling, templateKwargs, type ToolCallingPlan, type ToolRequestFields } from '../tool-calls/request-tools.js';
import { planReasoning, formatAfterReasoning, type ReasoningPlan } from '../reasoning/request-reasoning.js';
import { ReasoningSplitter } from '../reasoning/reasoning-splitter.js';
import { ChatChoiceReader } from './chat-choice-reader.js';
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
  include_reasoning?: boolean | null;
}

/** POST /v1/chat/completions */
export async function chatCompletions(ctx: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<object | undefined> {
  const arrivalMs = performance.now();
  const body = request.body as ChatBody;
  const { engine, lora } = ctx.checkModel(body.model, true);
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
  const rendered = await ctx.tokenizer.chat(engine, messages, templateKwargs(body.chat_template_kwargs, tools));
  // left truncation cuts the oldest turns (and the template's start), as vLLM's does
  const prompt = truncatedPrompt(rendered, params.truncatePromptTokens);
  const maxTokens = budgetTokens({
    promptTokens: prompt.length,
    resumedTokens: params.resumeTokenIds?.length ?? 0,
    requestedMaxTokens: params.requestedMaxTokens,
    contextLength: engine.contextLength,
    limits: ctx.limits,
    promptParam: 'messages',
    maxTokensParam,
  });
  const reasoning = await planReasoning(engine, ctx.reasoningParser, prompt);
  // a constrained answer (response_format, a required call) comes after the reasoning
  const afterReasoning = params.responseFormat ? formatAfterReasoning(reasoning) : undefined;
  const choices = Array.from({ length: params.n }, (_, i) => ({
    index: i,
    promptIndex: 0,
    request: {
      ...choiceRequest(params, prompt, maxTokens, i, { logprobs: withLogprobs, topLogprobs, requestId: request.id }),
      ...(lora !== undefined ? { lora } : {}),
      ...(afterReasoning ? { formatAfterReasoning: afterReasoning } : {}),
    },
  }));

  const shape = chatResponseShape({
    head: {
      id: `chatcmpl-${request.id}`,
      created: Math.floor(Date.now() / 1000),
      model: lora ?? ctx.modelName(),
      system_fingerprint: null,
    },
    includeUsage: params.includeUsage,
    returnTokenIds: params.returnTokenIds,
    withLogprobs,
    topLogprobs,
    promptLogprobs: params.promptLogprobs,
    includeReasoning: body.include_reasoning !== false,
    readers: await choiceReaders(engine, { tools, reasoning, n: params.n, resumeTokenIds: params.resumeTokenIds }),
    textOf: (ids) => generatedText(engine, ids),
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
  if (format !== undefined && format.type !== 'text') {
    const param = formatParamOf(format);
    throw new AutoGlmError(
      'invalid_request',
      `${param === 'response_format' ? `response_format ${format.type}` : param} cannot be combined with a tool_choice that requires a call: ` +
        "the output is the tool calls. Send one of them, or tool_choice 'auto'.",
      { param },
    );
  }
  return { ...params, responseFormat: tools.forcedCalls };
}

/**
 * One reader per choice: reasoning when a reasoning parser applies, tool calls when calls
 * are to be read. A resumed stream's reader first replays the text of the tokens already
 * sent, so it continues in the field the failed worker was writing (the rest of the
 * reasoning still arrives as reasoning) and a call begun there is completed here, numbered
 * after the calls that worker sent.
 */
async function choiceReaders(
  engine: InferenceEngine,
  o: { tools: ToolCallingPlan; reasoning: ReasoningPlan | null; n: number; resumeTokenIds: number[] | undefined },
): Promise<Map<number, ChatChoiceReader>> {
  const format = o.tools.format;
  const readers = new Map(
    Array.from({ length: o.n }, (_, i) => [
      i,
      new ChatChoiceReader(
        o.reasoning ? new ReasoningSplitter(o.reasoning.opening) : null,
        format
          ? new ChoiceToolCalls(createToolCallParser(format, o.tools.templateTools), { parallelToolCalls: o.tools.parallelToolCalls })
          : null,
      ),
    ]),
  );
  if (o.resumeTokenIds) {
    const sent = await generatedText(engine, o.resumeTokenIds);
    for (const reader of readers.values()) reader.replay(sent, o.resumeTokenIds);
  }
  return readers;
}
