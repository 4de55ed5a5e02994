import type { FastifyError, FastifyInstance } from 'fastify';
import { AutoGlmError, type ErrorCode } from '../errors.js';

export type OpenAiErrorBody = ReturnType<AutoGlmError['toJSON']>;

/**
 * The one place where anything thrown by a handler, by fastify (validation, JSON parsing,
 * body size) or by the engine becomes an OpenAI error body with the right status.
 */
export function toAutoGlmError(error: unknown): AutoGlmError {
  if (error instanceof AutoGlmError) return error;
  const fe = error as Partial<FastifyError> & { validation?: ValidationItem[] };
  if (fe.validation && fe.validation.length > 0) return fromValidation(fe.validation, fe.validationContext);
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AutoGlmError('invalid_json', `The request body is not valid JSON: ${fe.message ?? ''}`.trim());
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AutoGlmError('request_too_large', 'The request body is larger than this server accepts.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AutoGlmError('invalid_request', 'Content-Type must be application/json.');
  }
  if (error instanceof SyntaxError) return new AutoGlmError('invalid_json', `The request body is not valid JSON: ${error.message}`);
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const code: ErrorCode = fe.statusCode === 413 ? 'request_too_large' : fe.statusCode === 404 ? 'not_found' : 'invalid_request';
    return new AutoGlmError(code, fe.message ?? 'Bad request.');
  }
  return new AutoGlmError('internal_error', 'Internal server error.', { cause: error });
}

interface ValidationItem {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Names the offending parameter the way OpenAI does: `messages.0.role`, `temperature`. */
function fromValidation(items: ValidationItem[], context: string | undefined): AutoGlmError {
  const first = items[0]!;
  const segments = first.instancePath.split('/').filter((s) => s !== '');
  if (first.keyword === 'required' && typeof first.params.missingProperty === 'string') segments.push(first.params.missingProperty);
  if (first.keyword === 'additionalProperties' && typeof first.params.additionalProperty === 'string')
    segments.push(first.params.additionalProperty);
  const param = segments.join('.') || undefined;
  const where = param ?? context ?? 'body';
  return new AutoGlmError('invalid_request', `Invalid parameter '${where}': ${first.message ?? first.keyword}.`, { param });
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => {
    const e = toAutoGlmError(error);
    if (e.status >= 500) request.log.error({ err: e.cause ?? e, code: e.code }, 'request failed');
    else request.log.info({ code: e.code, param: e.param }, 'request rejected');
    if (reply.sent || reply.raw.headersSent) return;
    void reply.code(e.status).type('application/json').send(e.toJSON());
  });
  app.setNotFoundHandler((request, reply) => {
    const e = new AutoGlmError('not_found', `No route for ${request.method} ${request.url.split('?')[0]}.`);
    void reply.code(e.status).send(e.toJSON());
  });
}
