/**
 * The few etcd v3 calls the cluster needs, over etcd's JSON/HTTP gateway (grpc-gateway:
 * POST /v3/...; keys and values base64; 64-bit numbers as strings). No client library.
 */

export interface EtcdKv {
  key: string;
  value: string;
}

export interface EtcdWatchEvent {
  type: 'PUT' | 'DELETE';
  key: string;
  value: string;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

/** The key just past every key with this prefix (etcd's range_end for a prefix scan). */
export function prefixRangeEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]! += 1;
      return end.toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64');
}

export class EtcdError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'EtcdError';
  }
}

export class EtcdClient {
  private readonly base: string;

  constructor(
    url: string,
    private readonly timeoutMs = 2000,
  ) {
    this.base = url.replace(/\/+$/, '');
  }

  private async call<T>(path: string, body: object): Promise<T> {
    let r: Response;
    try {
      r = await fetch(`${this.base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw new EtcdError(`etcd ${path}: ${(e as Error).message}`);
    }
    const text = await r.text();
    if (!r.ok) throw new EtcdError(`etcd ${path}: HTTP ${r.status} ${text.slice(0, 200)}`, r.status);
    const json = JSON.parse(text) as T & { error?: string };
    if (typeof json.error === 'string') throw new EtcdError(`etcd ${path}: ${json.error}`);
    return json;
  }

  /** A lease that expires after `ttlSeconds` without a keep-alive. Returns its id. */
  async grantLease(ttlSeconds: number): Promise<string> {
    const r = await this.call<{ ID: string }>('/v3/lease/grant', { TTL: ttlSeconds });
    return r.ID;
  }

  /** Renews a lease; false when etcd no longer knows it (expired: re-grant and re-put). */
  async keepAlive(leaseId: string): Promise<boolean> {
    const r = await this.call<{ result?: { TTL?: string } }>('/v3/lease/keepalive', { ID: leaseId });
    return Number(r.result?.TTL ?? 0) > 0;
  }

  async revokeLease(leaseId: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: leaseId });
  }

  async put(key: string, value: string, leaseId?: string): Promise<void> {
    await this.call('/v3/kv/put', { key: b64(key), value: b64(value), ...(leaseId ? { lease: leaseId } : {}) });
  }

  /** Every key under a prefix, and the store revision the answer is from. */
  async rangePrefix(prefix: string): Promise<{ kvs: EtcdKv[]; revision: number }> {
    const r = await this.call<{ header?: { revision?: string }; kvs?: { key: string; value?: string }[] }>('/v3/kv/range', {
      key: b64(prefix),
      range_end: prefixRangeEnd(prefix),
    });
    return {
      kvs: (r.kvs ?? []).map((kv) => ({ key: unb64(kv.key), value: unb64(kv.value) })),
      revision: Number(r.header?.revision ?? 0),
    };
  }

  /**
   * Watches a prefix from `startRevision` until the signal aborts or the stream ends
   * (then it resolves; callers re-list and watch again). The gateway streams one JSON
   * object per line.
   */
  async watchPrefix(
    prefix: string,
    startRevision: number,
    onEvents: (events: EtcdWatchEvent[]) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const r = await fetch(`${this.base}/v3/watch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        create_request: { key: b64(prefix), range_end: prefixRangeEnd(prefix), start_revision: String(startRevision) },
      }),
      signal,
    });
    if (!r.ok || !r.body) throw new EtcdError(`etcd /v3/watch: HTTP ${r.status}`, r.status);
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line === '') continue;
        const msg = JSON.parse(line) as {
          result?: { canceled?: boolean; events?: { type?: string; kv?: { key: string; value?: string } }[] };
          error?: unknown;
        };
        if (msg.error !== undefined || msg.result?.canceled) throw new EtcdError(`etcd watch ended: ${JSON.stringify(msg).slice(0, 200)}`);
        const events = (msg.result?.events ?? []).map((e): EtcdWatchEvent => ({
          type: e.type === 'DELETE' ? 'DELETE' : 'PUT',
          key: unb64(e.kv?.key),
          value: unb64(e.kv?.value),
        }));
        if (events.length > 0) onEvents(events);
      }
    }
  }
}
