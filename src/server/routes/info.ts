import type { FastifyReply, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import { chatTemplateSourceOf } from '../tool-calls/model-tokenizer.js';
import { planToolCalling, templateKwargs, type ToolDefinition } from '../tool-calls/request-tools.js';
import { chatMessages, type BodyMessage } from './chat-messages.js';
import type { RouteContext } from './context.js';

const startedAtS = Math.floor(Date.now() / 1000);

/** GET /v1/models */
export async function listModels(ctx: RouteContext): Promise<object> {
  const engine = ctx.lifecycle.engine();
  const model = (id: string) => ({ id, object: 'model', created: startedAtS, owned_by: 'autoglm', max_model_len: engine.contextLength });
  // as vLLM lists them: every name of the base model, then the LoRA adapters, models of their
  // own whose parent is the base model
  const adapters = (engine.loraNames ?? []).map((id) => ({ ...model(id), parent: ctx.modelName() }));
  return { object: 'list', data: [ctx.modelName(), ...ctx.modelAliases].map(model).concat(adapters) };
}

/** POST /tokenize (vLLM's shape): a prompt, or chat messages with the template applied. */
export async function tokenize(ctx: RouteContext, request: FastifyRequest): Promise<object> {
  const body = request.body as {
    model?: string;
    prompt?: string;
    messages?: BodyMessage[];
    tools?: ToolDefinition[] | null;
    chat_template_kwargs?: Record<string, unknown> | null;
    add_special_tokens?: boolean;
    add_generation_prompt?: boolean;
  };
  const { engine } = ctx.checkModel(body.model, false);
  if (body.messages === undefined) {
    for (const param of ['tools', 'chat_template_kwargs'] as const)
      if (body[param] != null) throw new AutoGlmError('invalid_request', `${param} applies to messages, not to a prompt.`, { param });
  }
  // the same template variables a chat completion with these fields would use ('none': the
  // tools are rendered, no call format is needed to count tokens)
  const tools = planToolCalling(
    { tools: body.tools ?? null, tool_choice: 'none' },
    { templateSource: chatTemplateSourceOf(engine), parser: 'none' },
  );
  const kwargs = {
    ...templateKwargs(body.chat_template_kwargs, tools),
    ...(body.add_generation_prompt !== undefined ? { addGenerationPrompt: body.add_generation_prompt } : {}),
  };
  const tokens =
    body.messages !== undefined
      ? await ctx.tokenizer.chat(
          engine,
          // the same messages chat completions would template (content parts included)
          chatMessages(body.messages),
          Object.keys(kwargs).length > 0 ? kwargs : undefined,
        )
      : await ctx.tokenizer.text(engine, body.prompt ?? '', body.add_special_tokens);
  return { tokens, count: tokens.length, max_model_len: engine.contextLength };
}

/** POST /detokenize */
export async function detokenize(ctx: RouteContext, request: FastifyRequest): Promise<object> {
  const body = request.body as { model?: string; tokens: number[] };
  const { engine } = ctx.checkModel(body.model, false);
  // an id past the vocabulary is named as this route's field, not as the engine's token_ids
  return { prompt: await engine.detokenize(body.tokens, { param: 'tokens' }) };
}

/** GET /health: the process is alive and its GPU works (stays 200 while draining, so orchestrators let it finish). */
export async function health(ctx: RouteContext, _request: FastifyRequest, reply: FastifyReply): Promise<object> {
  void reply.header('cache-control', 'no-store');
  // a lost GPU does not come back in this process: fail liveness so that it is restarted
  const fault = ctx.lifecycle.fault;
  if (fault !== null) {
    void reply.code(503);
    return { status: 'failed', reason: fault };
  }
  return { status: 'ok' };
}

/**
 * GET /ready: 200 only when the model is loaded, the server is not draining and its GPU
 * works. The body is what a gateway's probes route by: the process's instance id (a restart
 * changes it), the names requests may use (the model's, its aliases, the LoRA adapters'),
 * and, to a caller with the credentials of the authenticated routes, the folders of the
 * adapters loaded at run time (so a gateway can load them onto the workers that lack them;
 * folder paths are not for anonymous callers).
 */
export async function ready(ctx: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<object> {
  void reply.header('cache-control', 'no-store');
  const { status, fault } = ctx.lifecycle;
  if (status !== 'ready') void reply.code(503);
  const engine = ctx.lifecycle.ready ? ctx.lifecycle.engine() : null;
  const runtime = engine && ctx.runtimeLoras && ctx.trusted(request) ? { runtime_adapters: Object.fromEntries(ctx.runtimeLoras) } : {};
  return {
    status,
    model: engine ? ctx.modelName() : null,
    aliases: engine ? ctx.modelAliases : null,
    pending: ctx.lifecycle.pending,
    instance: ctx.instanceId,
    adapters: engine ? (engine.loraNames ?? []) : null,
    ...runtime,
    ...(fault !== null ? { reason: fault } : {}),
  };
}

/** GET /metrics (Prometheus text format). */
export async function metrics(ctx: RouteContext, _request: FastifyRequest, reply: FastifyReply): Promise<string> {
  void reply.type(ctx.metrics.registry.contentType);
  return ctx.metrics.registry.metrics();
}
