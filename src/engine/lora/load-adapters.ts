/** Reads EngineOptions.loraAdapters, each against the base model, before any GPU work. */
import { AutoGlmError } from '../../errors.js';
import type { ModelSpec } from '../model/model-spec.js';
import type { LoraAdapterOption } from '../types.js';
import { loadLoraAdapter, type LoraAdapter } from './peft-adapter.js';

/** Adapters per engine at most: each is a slot in every adapted layer's tensors. */
export const MAX_LORA_ADAPTERS = 64;

function invalid(message: string): AutoGlmError {
  return new AutoGlmError('invalid_request', message, { param: 'loraAdapters' });
}

/** Checks the option's shape (engine-options.ts calls it before the model is read). */
export function validateLoraAdapterOptions(list: unknown): void {
  if (list === undefined) return;
  if (!Array.isArray(list)) throw invalid(`loraAdapters must be an array of { name, path }, got ${typeof list}`);
  if (list.length > MAX_LORA_ADAPTERS) throw invalid(`at most ${MAX_LORA_ADAPTERS} LoRA adapters, got ${list.length}`);
  const names = new Set<string>();
  list.forEach((entry: unknown, i) => {
    const e = entry as Partial<LoraAdapterOption> | null;
    if (typeof e !== 'object' || e === null || typeof e.name !== 'string' || typeof e.path !== 'string' || e.path === '')
      throw invalid(`loraAdapters[${i}] must be { name: string, path: string }`);
    if (!/^[\w.:/@+-]{1,128}$/.test(e.name))
      throw invalid(`loraAdapters[${i}].name ${JSON.stringify(e.name)} must be 1-128 letters, digits or . _ - : / @ +`);
    if (names.has(e.name)) throw invalid(`LoRA adapter name ${JSON.stringify(e.name)} is given twice`);
    names.add(e.name);
  });
}

export async function loadLoraAdapters(list: readonly LoraAdapterOption[], spec: ModelSpec, baseName: string): Promise<LoraAdapter[]> {
  const clash = list.find((a) => a.name === baseName);
  if (clash) throw invalid(`LoRA adapter name ${JSON.stringify(clash.name)} is the base model's name: requests could not tell them apart`);
  const adapters: LoraAdapter[] = [];
  for (const a of list) adapters.push(await loadLoraAdapter(a.name, a.path, spec));
  return adapters;
}
