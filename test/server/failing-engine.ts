import { buildGateway } from '../../src/cluster/gateway/build-gateway.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import type { GenerateRequest, InferenceEngine, TokenEvent } from '../../src/engine/types.js';
import { AutoGlmError } from '../../src/errors.js';
import { API_KEY, startServer, waitFor } from './helpers.js';

/**
 * The engine, except that each stream fails after `tokens` events (as a worker whose GPU is
 * lost mid-stream), for tests of resuming through the gateway; `broken` counts the failures.
 * A Proxy keeps every other member, the loaded folder (and its chat template) included.
 */
function breaksAfter(inner: InferenceEngine, tokens: number): InferenceEngine & { broken: number } {
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

/**
 * A real gateway in front of two workers on `engine`: the first one's streams break after
 * `tokens` events, and the balancer sends new requests there first (between equally loaded
 * workers the first listed is taken), so a stream starts on it and is resumed on the other.
 * Runs `body` with the gateway's URL and the failing engine, then closes everything.
 */
export async function behindGatewayWithFailingWorker(
  engine: InferenceEngine,
  tokens: number,
  body: (url: string, failing: InferenceEngine & { broken: number }) => Promise<void>,
): Promise<void> {
  const failing = breaksAfter(engine, tokens);
  const a = await startServer({ engine: failing });
  const b = await startServer({ engine });
  let gateway: Awaited<ReturnType<typeof buildGateway>> | undefined;
  try {
    gateway = await buildGateway({
      registry: new StaticRegistry([a.url, b.url]),
      auth: { apiKeys: [], disabled: true },
      workerApiKey: API_KEY,
      balancer: { random: () => 0 },
      health: { probeIntervalMs: 100 },
    });
    const url = await gateway.listen({ port: 0, host: '127.0.0.1' });
    await waitFor(() => gateway!.health.healthy().length === 2, 5000, 'both workers healthy');
    await body(url, failing);
  } finally {
    await gateway?.close();
    await a.close();
    await b.close();
  }
}
