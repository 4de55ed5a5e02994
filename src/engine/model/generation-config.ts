/**
 * generation_config.json: the EOS ids generation stops on (often several: Llama 3 lists
 * <|end_of_text|>, <|eom_id|>, <|eot_id|>) and the model's default sampling settings.
 */
import { join } from 'node:path';
import { AutoGlmError, isAutoGlmError } from '../../errors.js';
import { validateSampling } from '../request-validation.js';
import { readJsonFile } from './config.js';
import { fileProblem } from './model-file.js';
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

export async function loadGenerationConfig(
  dir: string,
  spec: Pick<ModelSpec, 'eosTokenIds' | 'bosTokenId' | 'vocabSize'>,
): Promise<GenerationDefaults> {
  const file = join(dir, 'generation_config.json');
  // optional; anything else in its place (a folder, a FIFO) is an error readJsonFile names
  if ((await fileProblem(file))?.missing) return generationDefaults({}, spec);
  return generationDefaults(await readJsonFile(file), spec);
}

/**
 * The EOS ids and sampling defaults change what every request does, so a value of the wrong
 * type or out of range fails the load naming the key: applied to each request, it would
 * otherwise fail every step that holds one (internal_error) or sample from garbage.
 * bos/pad/max_new_tokens are informational and read leniently.
 */
export function generationDefaults(
  json: Record<string, unknown>,
  spec: Pick<ModelSpec, 'eosTokenIds' | 'bosTokenId' | 'vocabSize'>,
): GenerationDefaults {
  const bad = (key: string, rule: string): AutoGlmError =>
    new AutoGlmError('model_load_failed', `generation_config.json ${key} must be ${rule} (got ${JSON.stringify(json[key])})`);
  const lenient = (key: string): number | null => {
    const v = json[key];
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  };
  const num = (key: string): number | null => {
    const v = json[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(key, 'a number');
    return v;
  };
  const eos = json['eos_token_id'];
  const eosList = Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos];
  if (!eosList.every((x) => Number.isInteger(x) && (x as number) >= 0)) throw bad('eos_token_id', 'a token id or a list of them');
  // as config.json's (config.ts): an id past the logits' rows could never be generated
  const unreachableEos = (eosList as number[]).find((id) => id >= spec.vocabSize);
  if (unreachableEos !== undefined)
    throw bad(
      'eos_token_id',
      `token ids below config.json vocab_size ${spec.vocabSize} (the rows the logits cover; ${unreachableEos} could never be generated)`,
    );
  const doSample = json['do_sample'];
  if (doSample !== undefined && doSample !== null && typeof doSample !== 'boolean') throw bad('do_sample', 'true or false');

  const sampling = {
    temperature: num('temperature'),
    topP: num('top_p'),
    topK: num('top_k'),
    minP: num('min_p'),
    repetitionPenalty: num('repetition_penalty'),
  };
  // The same ranges a request's own values must be in: the defaults stand in for them.
  try {
    validateSampling({
      temperature: sampling.temperature ?? undefined,
      topP: sampling.topP ?? undefined,
      topK: sampling.topK ?? undefined,
      minP: sampling.minP ?? undefined,
      repetitionPenalty: sampling.repetitionPenalty ?? undefined,
    });
  } catch (e) {
    if (!isAutoGlmError(e)) throw e;
    // no cause: it would repeat this message (the server logs causes after the error)
    throw new AutoGlmError('model_load_failed', `generation_config.json ${e.message}`);
  }
  const bos = lenient('bos_token_id');
  const pad = lenient('pad_token_id');
  return {
    eosTokenIds: [...new Set([...spec.eosTokenIds, ...(eosList as number[])])],
    bosTokenId: spec.bosTokenId ?? (bos !== null && Number.isInteger(bos) ? bos : null),
    padTokenId: pad !== null && Number.isInteger(pad) ? pad : null,
    doSample: typeof doSample === 'boolean' ? doSample : null,
    ...sampling,
    maxNewTokens: lenient('max_new_tokens'),
  };
}
