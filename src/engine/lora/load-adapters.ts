/** Reads EngineOptions.loraAdapters, each against the base model, before any GPU work. */
import { AutoGlmError } from '../../errors.js';
import type { ModelSpec } from '../model/model-spec.js';
import type { EngineOptions, LoraAdapterOption } from '../types.js';
import { loadLoraAdapter, MAX_LORA_RANK, type LoraAdapter } from './peft-adapter.js';

/** Adapters per engine at most: each is a slot in every adapted layer's tensors. */
export const MAX_LORA_ADAPTERS = 64;
/** Slot rank where no adapter given at load sets it (vLLM's --max-lora-rank default). */
export const DEFAULT_MAX_LORA_RANK = 16;

/** A LoRA name requests can send as their model: letters, digits and . _ - : / @ +. */
export function checkLoraName(name: unknown, label: string, param = label): void {
  if (!(typeof name === 'string' && /^[\w.:/@+-]{1,128}$/.test(name)))
    throw new AutoGlmError('invalid_request', `${label} ${JSON.stringify(name)} must be 1-128 letters, digits or . _ - : / @ +`, { param });
}

/** An adapter may not take the base model's name: requests could not tell them apart. */
export function refuseBaseModelName(name: string, baseName: string, param: string): void {
  if (name === baseName)
    throw new AutoGlmError(
      'invalid_request',
      `LoRA adapter name ${JSON.stringify(name)} is the base model's name: requests could not tell them apart`,
      { param },
    );
}

function invalid(message: string): AutoGlmError {
  return new AutoGlmError('invalid_request', message, { param: 'loraAdapters' });
}

/** Checks the options' shapes (engine-options.ts calls it before the model is read). */
export function validateLoraOptions(options: Pick<EngineOptions, 'loraAdapters' | 'maxLoras' | 'maxLoraRank'>): void {
  validateLoraAdapterOptions(options.loraAdapters);
  for (const [key, least, most] of [
    ['maxLoras', 0, MAX_LORA_ADAPTERS],
    ['maxLoraRank', 1, MAX_LORA_RANK],
  ] as const) {
    const v: unknown = options[key];
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v >= least && v <= most))
      throw new AutoGlmError('invalid_request', `${key} must be an integer in [${least}, ${most}], got ${String(v)}`, { param: key });
  }
  const given = options.loraAdapters?.length ?? 0;
  if (options.maxLoras !== undefined && options.maxLoras < given)
    throw new AutoGlmError('invalid_request', `maxLoras (${options.maxLoras}) is fewer than the ${given} loraAdapters given`, {
      param: 'maxLoras',
    });
}

export function validateLoraAdapterOptions(list: unknown): void {
  if (list === undefined) return;
  if (!Array.isArray(list)) throw invalid(`loraAdapters must be an array of { name, path }, got ${typeof list}`);
  if (list.length > MAX_LORA_ADAPTERS) throw invalid(`at most ${MAX_LORA_ADAPTERS} LoRA adapters, got ${list.length}`);
  const names = new Set<string>();
  list.forEach((entry: unknown, i) => {
    const e = entry as Partial<LoraAdapterOption> | null;
    if (typeof e !== 'object' || e === null || typeof e.name !== 'string' || typeof e.path !== 'string' || e.path === '')
      throw invalid(`loraAdapters[${i}] must be { name: string, path: string }`);
    checkLoraName(e.name, `loraAdapters[${i}].name`, 'loraAdapters');
    if (names.has(e.name)) throw invalid(`LoRA adapter name ${JSON.stringify(e.name)} is given twice`);
    names.add(e.name);
  });
}

export async function loadLoraAdapters(
  list: readonly LoraAdapterOption[],
  spec: ModelSpec,
  baseName: string,
  maxLoraRank?: number,
): Promise<LoraAdapter[]> {
  for (const a of list) refuseBaseModelName(a.name, baseName, 'loraAdapters');
  const adapters: LoraAdapter[] = [];
  for (const a of list) adapters.push(await loadLoraAdapter(a.name, a.path, spec));
  const over = maxLoraRank === undefined ? undefined : adapters.find((a) => a.rank > maxLoraRank);
  if (over)
    throw new AutoGlmError('invalid_request', `LoRA adapter ${over.name} has rank ${over.rank}, above maxLoraRank ${maxLoraRank}`, {
      param: 'maxLoraRank',
    });
  return adapters;
}
