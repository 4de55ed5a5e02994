import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
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
  /** The schema holding the failed keyword (ajv's `verbose`): its `description` names the accepted forms. */
  parentSchema?: { description?: unknown };
}

/** Names the offending parameter the way OpenAI does: `messages.0.role`, `temperature`. */
function fromValidation(items: ValidationItem[], context: string | undefined): AutoGlmError {
  const choice = choiceFailure(items);
  const first = choice ?? items[0]!;
  const segments = first.instancePath.split('/').filter((s) => s !== '');
  if (first.keyword === 'required' && typeof first.params.missingProperty === 'string') segments.push(first.params.missingProperty);
  if (first.keyword === 'additionalProperties' && typeof first.params.additionalProperty === 'string')
    segments.push(first.params.additionalProperty);
  const param = segments.join('.') || undefined;
  const where = param ?? context ?? 'body';
  const message = choice ? `must be ${String(choice.parentSchema?.description)}` : (first.message ?? first.keyword);
  return new AutoGlmError('invalid_request', `Invalid parameter '${where}': ${message}.`, { param });
}

/**
 * A parameter with several accepted forms (anyOf / oneOf: prompt, stop, message content)
 * fails with each alternative's complaint first and its own last. The first alone misleads
 * ("must be string" for a token id list holding a -1, "must be null" for `stop: 5`), so
 * the choice is reported instead, with the forms its schema describes.
 */
function choiceFailure(items: ValidationItem[]): ValidationItem | undefined {
  const last = items.at(-1)!;
  return (last.keyword === 'anyOf' || last.keyword === 'oneOf') && typeof last.parentSchema?.description === 'string' ? last : undefined;
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

/**
 * Fastify options for the two errors that never reach the error handler: a URL that does
 * not percent-decode (the router answers it) and a request Node's HTTP parser refuses
 * (headers or URL too large, malformed framing). Without them those answers carry
 * fastify's own body (`{"error":"Bad Request","statusCode":400}`), not OpenAI's.
 */
export const OPENAI_FRAMEWORK_ERRORS: Pick<FastifyServerOptions, 'frameworkErrors' | 'clientErrorHandler'> = {
  // fastify types this option generically over every route's reply; ours is the plain one
  frameworkErrors: answerFrameworkError as FastifyServerOptions['frameworkErrors'],
  clientErrorHandler: answerClientError,
};

function answerFrameworkError(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const e = toAutoGlmError(error);
  void reply.code(e.status).type('application/json').send(e.toJSON());
}

/** Node's 'clientError': no request object exists, so the answer is written on the socket (as fastify's default does). */
function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  // A reset connection has no one left to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, e] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, new AutoGlmError('request_too_large', 'The request line or headers are larger than this server accepts.')]
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, new AutoGlmError('invalid_request', 'The request was not received in time.')]
        : [400, new AutoGlmError('invalid_request', 'The request is not valid HTTP.')];
  const body = JSON.stringify(e.toJSON());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}
