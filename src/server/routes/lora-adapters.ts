/**
 * vLLM's run-time LoRA endpoints, registered only with --allow-runtime-lora-updates (they
 * read folders on the server's disk): POST /v1/load_lora_adapter {lora_name, lora_path} and
 * POST /v1/unload_lora_adapter {lora_name}. Answers as vLLM does, a line of plain text.
 */
import { resolve } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import type { InferenceEngine } from '../../engine/types.js';
import type { RouteContext } from './context.js';

/** A route's required string field, or invalid_request naming it (the gateway's routes read the same). */
/** vLLM's answers to a load and an unload (the gateway's routes give the same). */
export const loraLoadedText = (name: string): string => `Success: LoRA adapter '${name}' added successfully.`;
export const loraUnloadedText = (name: string): string => `Success: LoRA adapter '${name}' removed successfully.`;

export function loraField(body: unknown, name: 'lora_name' | 'lora_path'): string {
  const v = (body as Record<string, unknown> | null)?.[name];
  if (typeof v !== 'string' || v === '') throw new AutoGlmError('invalid_request', `${name} must be a non-empty string.`, { param: name });
  return v;
}

function updatable(ctx: RouteContext): Required<Pick<InferenceEngine, 'loadLora' | 'unloadLora'>> {
  const engine = ctx.lifecycle.engine();
  if (!engine.loadLora || !engine.unloadLora)
    throw new AutoGlmError('invalid_request', 'This engine cannot load LoRA adapters at run time.');
  return { loadLora: engine.loadLora.bind(engine), unloadLora: engine.unloadLora.bind(engine) };
}

export async function loadLoraAdapter(ctx: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<string> {
  const name = loraField(request.body, 'lora_name');
  const path = loraField(request.body, 'lora_path');
  await updatable(ctx).loadLora(name, path);
  // absolute, as /ready reports it: a gateway replays it on workers whose working folder may differ
  ctx.runtimeLoras?.set(name, resolve(path));
  ctx.log.info({ lora: name, path }, 'LoRA adapter loaded');
  void reply.type('text/plain; charset=utf-8');
  return loraLoadedText(name);
}

export async function unloadLoraAdapter(ctx: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<string> {
  const name = loraField(request.body, 'lora_name');
  updatable(ctx).unloadLora(name);
  ctx.runtimeLoras?.delete(name);
  ctx.log.info({ lora: name }, 'LoRA adapter unloaded');
  void reply.type('text/plain; charset=utf-8');
  return loraUnloadedText(name);
}
