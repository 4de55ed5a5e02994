/**
 * generation_config.json: the EOS ids generation stops on (often several: Llama 3 lists
 * <|end_of_text|>, <|eom_id|>, <|eot_id|>) and the model's default sampling settings.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { readJsonFile } from './config.js';
import type { ModelSpec } from './model-spec.js';

export interface GenerationDefaults {
  /** config.json's and generation_config.json's EOS ids together, without duplicates. */
  eosTokenIds: number[];
  bosTokenId: number | null;
  padTokenId: number | null;
  /** False when the file says do_sample: false (greedy by default). */
  doSample: boolean | null;
  temperature: number | null;
  topP: number | null;
  topK: number | null;
  minP: number | null;
  repetitionPenalty: number | null;
  maxNewTokens: number | null;
}

export async function loadGenerationConfig(dir: string, spec: Pick<ModelSpec, 'eosTokenIds' | 'bosTokenId'>): Promise<GenerationDefaults> {
  const file = join(dir, 'generation_config.json');
  let json: Record<string, unknown> = {};
  try {
    await access(file);
    json = await readJsonFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return generationDefaults(json, spec);
}

export function generationDefaults(json: Record<string, unknown>, spec: Pick<ModelSpec, 'eosTokenIds' | 'bosTokenId'>): GenerationDefaults {
  const ids = (v: unknown): number[] =>
    (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]).filter((x): x is number => Number.isInteger(x) && x >= 0);
  const num = (key: string): number | null => {
    const v = json[key];
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  };
  const bos = num('bos_token_id');
  const pad = num('pad_token_id');
  return {
    eosTokenIds: [...new Set([...spec.eosTokenIds, ...ids(json['eos_token_id'])])],
    bosTokenId: spec.bosTokenId ?? (bos !== null && Number.isInteger(bos) ? bos : null),
    padTokenId: pad !== null && Number.isInteger(pad) ? pad : null,
    doSample: typeof json['do_sample'] === 'boolean' ? json['do_sample'] : null,
    temperature: num('temperature'),
    topP: num('top_p'),
    topK: num('top_k'),
    minP: num('min_p'),
    repetitionPenalty: num('repetition_penalty'),
    maxNewTokens: num('max_new_tokens'),
  };
}
