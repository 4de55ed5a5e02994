import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import type { InferenceEngine } from '../../engine/types.js';
import type { ServerLifecycle } from '../lifecycle.js';
import type { ServerMetrics } from '../metrics.js';
import type { ServerLimits } from '../options.js';
import type { PromptTokenizer } from '../prompt-tokenizer.js';
import type { ReasoningParserOption } from '../reasoning/types.js';
import type { ToolCallParserOption } from '../tool-calls/types.js';

/** What every route handler may use; built once per server. */
export interface RouteContext {
  lifecycle: ServerLifecycle;
  metrics: ServerMetrics;
  limits: ServerLimits;
  tokenizer: PromptTokenizer;
  /** How tool calls are read from output (--tool-call-parser). */
  toolCallParser: ToolCallParserOption;
  /** How reasoning is read from chat output (--reasoning-parser). */
  reasoningParser: ReasoningParserOption;
  log: FastifyBaseLogger;
  /** The name reported to clients. */
  modelName(): string;
  /** More names the base model answers to (ServerOptions.modelAliases). */
  modelAliases: readonly string[];
  /**
   * The engine for a request's `model`, and the LoRA adapter it names (an adapter's name
   * selects the base model plus that adapter). Throws 404 model_not_found unless `name` is
   * the served model, an alias or a loaded adapter.
   */
  checkModel(name: string | undefined, required: boolean): ModelChoice;
  /** Random per process: a gateway that sees it change knows the worker restarted (and lost its run-time adapters). */
  instanceId: string;
  /**
   * Adapters loaded through POST /v1/load_lora_adapter, name -> folder, still loaded; null
   * when those routes are not served. /ready reports them to the gateway, which loads them
   * onto workers that lack them (a new or restarted one).
   */
  runtimeLoras: Map<string, string> | null;
  /** Whether the request carries the credentials the authenticated routes need (checked, never thrown). */
  trusted(request: FastifyRequest): boolean;
}

export interface ModelChoice {
  engine: InferenceEngine;
  /** The LoRA adapter `model` named; undefined for the base model. */
  lora: string | undefined;
}

export function makeModelChecker(
  lifecycle: ServerLifecycle,
  servedName: () => string,
  aliases: readonly string[],
): RouteContext['checkModel'] {
  return (name, required) => {
    const engine = lifecycle.engine();
    if (name === undefined || name === '') {
      if (required) throw new AutoGlmError('invalid_request', "Missing required parameter 'model'.", { param: 'model' });
      return { engine, lora: undefined };
    }
    if (name === servedName() || aliases.includes(name)) return { engine, lora: undefined };
    const loras = engine.loraNames ?? [];
    if (loras.includes(name)) return { engine, lora: name };
    const adapters = loras.length > 0 ? ` or one of its LoRA adapters (${loras.join(', ')})` : '';
    throw new AutoGlmError('model_not_found', `The model '${name}' does not exist; this server serves '${servedName()}'${adapters}.`, {
      param: 'model',
    });
  };
}
