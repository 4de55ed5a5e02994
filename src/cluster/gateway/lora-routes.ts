/**
 * vLLM's run-time LoRA endpoints at the gateway (--allow-runtime-lora-updates): the same
 * POST /v1/load_lora_adapter and /v1/unload_lora_adapter a worker serves, for the whole
 * cluster (lora-sync.ts). Answers as a worker does: a line of plain text, or the worker's
 * own refusal when every worker refused.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import { loraAlreadyLoaded } from '../../engine/lora/lora-registry.js';
import { loraField, loraLoadedText, loraUnloadedText } from '../../server/routes/lora-adapters.js';
import type { LoraSync } from './lora-sync.js';

type Guard = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** A worker's own refusal (an OpenAI error body), as it gave it. */
function passOn(reply: FastifyReply, refusal: { status: number; body: string }): FastifyReply {
  return reply.code(refusal.status).type('application/json; charset=utf-8').send(refusal.body);
}

export function installLoraRoutes(app: FastifyInstance, sync: LoraSync, guard: Guard): void {
  app.post('/v1/load_lora_adapter', { onRequest: guard }, async (request, reply) => {
    const name = loraField(request.body, 'lora_name');
    const path = loraField(request.body, 'lora_path');
    if (sync.has(name)) throw loraAlreadyLoaded(name);
    const result = await sync.load(name, path);
    if (result.of === 0) throw new AutoGlmError('no_healthy_worker', 'No healthy worker to load the adapter onto.');
    if (result.refusal) return passOn(reply, result.refusal);
    if (result.ok.length === 0) throw new AutoGlmError('upstream_error', `No worker loaded the adapter (${result.errors.join('; ')}).`);
    const rest =
      result.ok.length < result.of
        ? ` Loaded on ${result.ok.length} of ${result.of} workers; the gateway keeps loading it onto the others (GET /cluster/workers).`
        : '';
    return reply.type('text/plain; charset=utf-8').send(`${loraLoadedText(name)}${rest}`);
  });

  app.post('/v1/unload_lora_adapter', { onRequest: guard }, async (request, reply) => {
    const name = loraField(request.body, 'lora_name');
    const notFound = () =>
      new AutoGlmError('model_not_found', `No worker serves a LoRA adapter named ${JSON.stringify(name)}.`, { param: 'lora_name' });
    const kept = sync.has(name);
    if (!kept && !sync.servedAnywhere(name)) throw notFound();
    const result = await sync.unload(name);
    if (result.refusal) return passOn(reply, result.refusal);
    // a probe's list a moment old named it, but no worker had it any more (a second unload)
    if (!kept && result.removed === 0) throw notFound();
    return reply.type('text/plain; charset=utf-8').send(loraUnloadedText(name));
  });
}
