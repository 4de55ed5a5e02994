import type { FastifyReply, FastifyRequest, FastifySchema, HTTPMethods } from 'fastify';
import { chatCompletionSchema, completionSchema, detokenizeSchema, tokenizeSchema } from '../schemas.js';
import { chatCompletions } from './chat.js';
import { completions } from './completions.js';
import type { RouteContext } from './context.js';
import { detokenize, health, listModels, metrics, ready, tokenize } from './info.js';
import { loadLoraAdapter, unloadLoraAdapter } from './lora-adapters.js';

/** What a route needs before its handler runs. */
export type RouteGuard = 'open' | 'authenticated' | 'generation';

export interface RouteEntry {
  method: HTTPMethods;
  url: string;
  schema?: FastifySchema;
  /** open: no checks; authenticated: key + cluster secret + rate limit + not draining; generation: also queue admission. */
  guard: RouteGuard;
  handler: (ctx: RouteContext, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

export const ROUTES: RouteEntry[] = [
  { method: 'POST', url: '/v1/chat/completions', schema: chatCompletionSchema, guard: 'generation', handler: chatCompletions },
  { method: 'POST', url: '/v1/completions', schema: completionSchema, guard: 'generation', handler: completions },
  { method: 'GET', url: '/v1/models', guard: 'authenticated', handler: listModels },
  { method: 'POST', url: '/tokenize', schema: tokenizeSchema, guard: 'authenticated', handler: tokenize },
  { method: 'POST', url: '/detokenize', schema: detokenizeSchema, guard: 'authenticated', handler: detokenize },
  { method: 'GET', url: '/health', guard: 'open', handler: health },
  { method: 'GET', url: '/ready', guard: 'open', handler: ready },
  { method: 'GET', url: '/metrics', guard: 'open', handler: metrics },
];

/** vLLM's run-time LoRA endpoints: only with ServerOptions.allowRuntimeLoraUpdates. */
export const LORA_UPDATE_ROUTES: RouteEntry[] = [
  { method: 'POST', url: '/v1/load_lora_adapter', guard: 'authenticated', handler: loadLoraAdapter },
  { method: 'POST', url: '/v1/unload_lora_adapter', guard: 'authenticated', handler: unloadLoraAdapter },
];
