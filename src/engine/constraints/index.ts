export { ResponseFormatConstraints, formatKey, type ResponseFormatOptions } from './response-format.js';
export { TokenConstraint, type CompiledFormat, type ConstraintVocabulary, type OutputConstraint } from './token-constraint.js';
export { ReasoningGate } from './reasoning-gate.js';
export { maskWords } from './mask-walk.js';
export { TOOL_CALL_MARKERS, toolCallGrammar } from './tool-call-grammar.js';
