import type { GenerateRequest, InferenceEngine, TokenEvent } from '../../src/engine/types.js';
import { AutoGlmError } from '../../src/errors.js';

/**
 * The engine, except that each stream fails after `tokens` events (as a worker whose GPU is
 * lost mid-stream), for tests of resuming through the gateway; `broken` counts the failures.
 * A Proxy keeps every other member, the loaded folder (and its chat template) included.
 */
export function breaksAfter(inner: InferenceEngine, tokens: number): InferenceEngine & { broken: number } {
  const state = { broken: 0 };
  async function* generate(request: GenerateRequest): AsyncIterable<TokenEvent> {
    let n = 0;
    for await (const event of inner.generate(request)) {
      if (n++ === tokens) {
        state.broken++;
        throw new AutoGlmError('internal_error', 'injected failure mid-stream');
      }
      yield event;
    }
  }
  return new Proxy(inner, {
    get: (target, key) => (key === 'generate' ? generate : key === 'broken' ? state.broken : Reflect.get(target, key)),
  }) as InferenceEngine & { broken: number };
}
