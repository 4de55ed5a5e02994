/**
 * Everything the engine reads from a model folder before touching the GPU: the spec
 * (config.json), the validated weights index, the tokenizer with its chat template, and
 * generation defaults. A broken folder fails here with a clear error, before any GPU work.
 */
import { stat } from 'node:fs/promises';
import { AutoGlmError, isAutoGlmError } from '../errors.js';
import { loadGenerationConfig, type GenerationDefaults } from './model/generation-config.js';
import { loadModelSpec } from './model/config.js';
import type { ModelSpec } from './model/model-spec.js';
import { openModelWeights, type ModelWeights } from './model/sharded.js';
import type { SamplingDefaults } from './request-validation.js';
import { loadTokenizer, type Tokenizer } from './tokenizer/tokenizer.js';

export interface LoadedModelFolder {
  dir: string;
  spec: ModelSpec;
  weights: ModelWeights;
  tokenizer: Tokenizer;
  generation: GenerationDefaults;
  /** config, generation_config and tokenizer EOS ids together. */
  eosTokenIds: number[];
  samplingDefaults: SamplingDefaults;
}

export async function loadModelFolder(dir: string): Promise<LoadedModelFolder> {
  const info = await stat(dir).catch(() => null);
  if (!info?.isDirectory()) {
    throw new AutoGlmError(
      'model_load_failed',
      `model folder ${dir} does not exist or is not a folder (expected config.json, model.safetensors, tokenizer.json)`,
    );
  }
  try {
    const spec = await loadModelSpec(dir);
    const weights = await openModelWeights(dir, { spec });
    let tokenizer: Tokenizer;
    let generation: GenerationDefaults;
    try {
      tokenizer = await loadTokenizer(dir);
      checkTokenizerFitsModel(tokenizer, spec);
      generation = await loadGenerationConfig(dir, spec);
    } catch (e) {
      await weights.close();
      throw e;
    }
    const eosTokenIds = [...new Set([...generation.eosTokenIds, ...tokenizer.eosTokenIds])];
    const greedyByDefault = generation.doSample === false;
    const samplingDefaults: SamplingDefaults = {
      temperature: greedyByDefault ? 0 : (generation.temperature ?? undefined),
      topP: generation.topP ?? undefined,
      topK: generation.topK ?? undefined,
      minP: generation.minP ?? undefined,
      repetitionPenalty: generation.repetitionPenalty ?? undefined,
    };
    return { dir, spec, weights, tokenizer, generation, eosTokenIds, samplingDefaults };
  } catch (e) {
    if (isAutoGlmError(e)) throw e;
    throw new AutoGlmError('model_load_failed', `cannot load the model in ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Plain text encodes to ids of the tokenizer's base vocabulary; when those run past the
 * embedding table the tokenizer belongs to another model, and every text request would
 * fail inside a step (taking the requests batched with it along). Added tokens past
 * vocab_size (a pad token a fine-tune added without resizing) are tolerated here: only a
 * prompt that uses one is refused, at admission.
 */
function checkTokenizerFitsModel(tokenizer: Tokenizer, spec: ModelSpec): void {
  if (tokenizer.baseVocabSize <= spec.vocabSize) return;
  throw new AutoGlmError(
    'model_load_failed',
    `tokenizer.json's vocabulary runs to id ${tokenizer.baseVocabSize - 1}, past config.json vocab_size ${spec.vocabSize}: ` +
      'the tokenizer files belong to a different model',
  );
}
