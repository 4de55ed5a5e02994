import type { FastifyBaseLogger } from 'fastify';
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
  /** Throws 404 model_not_found unless `name` is the served model (or an alias). */
  checkModel(name: string | undefined, required: boolean): InferenceEngine;
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
      return engine;
    }
    if (name !== servedName() && !aliases.includes(name))
      throw new AutoGlmError('model_not_found', `The model '${name}' does not exist; this server serves '${servedName()}'.`, {
        param: 'model',
      });
    return engine;
  };
}
