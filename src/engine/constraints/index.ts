export { ResponseFormatConstraints, formatKey, type ResponseFormatOptions } from './response-format.js';
export { TokenConstraint, type CompiledFormat, type ConstraintVocabulary } from './token-constraint.js';
export { maskWords } from './mask-walk.js';
