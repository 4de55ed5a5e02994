export { Tokenizer, loadTokenizer, type EncodeOptions, type DecodeOptions } from './tokenizer.js';
export { ChatTemplate, selectTemplateSource, type RenderChatOptions } from './chat-template.js';
export { IncrementalDetokenizer, type Detokenize, type IncrementalDetokenizerOptions } from './incremental-detokenizer.js';
export { StopStringMatcher, type StopMatch, type StopStringOptions } from './stop-strings.js';
