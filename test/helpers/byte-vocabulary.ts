import { ResponseFormatConstraints } from '../../src/engine/constraints/response-format.js';

/** A vocabulary where token b is byte b and 256 is EOS: constrained decoding tests without a tokenizer. */
export const BYTE_VOCABULARY = {
  baseVocabSize: 256,
  tokenString: (id: number) => (id < 256 ? String.fromCharCode(id) : undefined),
  decode: (ids: readonly number[]) => String.fromCharCode(...ids),
  isSpecial: (id: number) => id === 256,
};

/** Response-format constraints over BYTE_VOCABULARY. */
export function byteConstraints(): ResponseFormatConstraints {
  return new ResponseFormatConstraints({ vocabulary: BYTE_VOCABULARY, vocabSize: 257, eosTokenIds: [256] });
}
