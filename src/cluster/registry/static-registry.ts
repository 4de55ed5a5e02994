import { requireWorkerUrl, type WorkerEndpoint } from '../types.js';
import { RegistryBase } from './registry.js';

/** A fixed list of worker URLs (`--workers http://a:8000,http://b:8000`). */
export class StaticRegistry extends RegistryBase {
  readonly kind = 'static';

  private readonly urls: readonly string[];

  constructor(urls: readonly string[]) {
    super();
    this.urls = urls.map((raw) => requireWorkerUrl(raw, 'a worker URL', 'workers'));
  }

  async start(): Promise<void> {
    this.replaceAll(this.urls.map((url): WorkerEndpoint => ({ id: url, url })));
  }

  async stop(): Promise<void> {}
}
