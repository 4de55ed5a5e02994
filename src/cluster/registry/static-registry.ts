import { normalizeUrl, type WorkerEndpoint } from '../types.js';
import { RegistryBase } from './registry.js';

/** A fixed list of worker URLs (`--workers http://a:8000,http://b:8000`). */
export class StaticRegistry extends RegistryBase {
  readonly kind = 'static';

  constructor(private readonly urls: readonly string[]) {
    super();
  }

  async start(): Promise<void> {
    this.replaceAll(this.urls.map((u): WorkerEndpoint => ({ id: normalizeUrl(u), url: normalizeUrl(u) })));
  }

  async stop(): Promise<void> {}
}
