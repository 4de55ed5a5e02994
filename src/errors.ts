/**
 * The error catalogue. Every error a user can see has a stable code, an HTTP status and
 * an OpenAI error type, so the server and the gateway translate errors without guessing.
 * Dependencies' errors (Dawn, fs, JSON) are translated into these at the layer boundary.
 */

export interface ErrorSpec {
  status: number;
  type: 'invalid_request_error' | 'authentication_error' | 'permission_error' | 'rate_limit_error' | 'server_error' | 'not_found_error';
}

export const ERROR_CATALOGUE = {
  // request validation
  invalid_request: { status: 400, type: 'invalid_request_error' },
  invalid_json: { status: 400, type: 'invalid_request_error' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error' },
  request_too_large: { status: 413, type: 'invalid_request_error' },
  model_not_found: { status: 404, type: 'not_found_error' },
  not_found: { status: 404, type: 'not_found_error' },
  // auth and admission
  invalid_api_key: { status: 401, type: 'authentication_error' },
  origin_not_allowed: { status: 403, type: 'permission_error' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error' },
  queue_full: { status: 429, type: 'rate_limit_error' },
  server_draining: { status: 503, type: 'server_error' },
  not_ready: { status: 503, type: 'server_error' },
  no_healthy_worker: { status: 503, type: 'server_error' },
  upstream_error: { status: 502, type: 'server_error' },
  request_timeout: { status: 504, type: 'server_error' },
  request_cancelled: { status: 499, type: 'invalid_request_error' },
  // model loading
  model_load_failed: { status: 500, type: 'server_error' },
  unsupported_architecture: { status: 400, type: 'invalid_request_error' },
  invalid_safetensors: { status: 500, type: 'server_error' },
  tokenizer_error: { status: 500, type: 'server_error' },
  // GPU
  gpu_unavailable: { status: 503, type: 'server_error' },
  gpu_validation_error: { status: 500, type: 'server_error' },
  gpu_out_of_memory: { status: 507, type: 'server_error' },
  gpu_device_lost: { status: 503, type: 'server_error' },
  gpu_internal_error: { status: 500, type: 'server_error' },
  internal_error: { status: 500, type: 'server_error' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface AutoGlmErrorOptions {
  /** The request parameter at fault, reported as OpenAI's `param`. */
  param?: string;
  cause?: unknown;
}

export class AutoGlmError extends Error {
  readonly code: ErrorCode;
  readonly param: string | undefined;

  constructor(code: ErrorCode, message: string, options: AutoGlmErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'AutoGlmError';
    this.code = code;
    this.param = options.param;
  }

  get status(): number {
    return ERROR_CATALOGUE[this.code].status;
  }

  get type(): string {
    return ERROR_CATALOGUE[this.code].type;
  }

  /** OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`. */
  toJSON(): { error: { message: string; type: string; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param ?? null, code: this.code } };
  }
}

export function isAutoGlmError(e: unknown, code?: ErrorCode): e is AutoGlmError {
  return e instanceof AutoGlmError && (code === undefined || e.code === code);
}
