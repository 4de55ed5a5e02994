export { buildServer, CLUSTER_SECRET_HEADER, type AutoGlmServer } from './build-server.js';
export type { ServerOptions, ServerLimits, AuthOptions, RateLimitOptions, TokenizerPoolOptions } from './options.js';
export { DEFAULT_LIMITS } from './options.js';
export { parseKeyFile } from './auth.js';
