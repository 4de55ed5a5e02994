export { ResponseFormatConstraints, formatKey, type ResponseFormatOptions } from './response-format.js';
export { TokenConstraint, type CompiledFormat, type ConstraintVocabulary } from './token-constraint.js';
export { maskWords } from './mask-walk.js';
export { TOOL_CALL_MARKERS, toolCallGrammar } from './tool-call-grammar.js';
