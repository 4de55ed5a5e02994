import { AutoGlmError } from '../../errors.js';
import { parseWorkerUrl, type WorkerEndpoint } from '../types.js';
import { RegistryBase } from './registry.js';

/** A fixed list of worker URLs (`--workers http://a:8000,http://b:8000`). */
export class StaticRegistry extends RegistryBase {
  readonly kind = 'static';

  private readonly urls: readonly string[];

  constructor(urls: readonly string[]) {
    super();
    this.urls = urls.map((raw) => {
      const url = parseWorkerUrl(raw);
      if (url === null)
        throw new AutoGlmError('invalid_request', `worker URL '${raw}' is not an http(s) URL such as http://10.0.0.7:8000.`, {
          param: 'workers',
        });
      return url;
    });
  }

  async start(): Promise<void> {
    this.replaceAll(this.urls.map((url): WorkerEndpoint => ({ id: url, url })));
  }

  async stop(): Promise<void> {}
}
