import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { KubernetesApiError } from '../../src/cluster/registry/kubernetes-client.js';
import { KubernetesRegistry, type KubernetesRegistryOptions } from '../../src/cluster/registry/kubernetes-registry.js';
import { endpointSlice, FakeKubeApi, selfSignedCert, type FakeEndpoint } from './support/fake-kube-api.js';
import { waitFor } from './support/processes.js';

// The kubernetes registry against a loopback API server that speaks the same list + watch
// protocol (support/fake-kube-api.ts): the registry's own requests, streams and retries.
const NS = 'autoglm';
const SVC = 'autoglm-workers';
let dir: string;
let tokenFile: string;
let api: FakeKubeApi;
const registries: KubernetesRegistry[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'autoglm-k8s-'));
  tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'token-1\n');
  api = await FakeKubeApi.start({ namespace: NS, tokens: ['token-1'] });
});

afterEach(async () => {
  for (const r of registries.splice(0)) await r.stop();
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

function registry(options: Partial<KubernetesRegistryOptions> = {}): KubernetesRegistry {
  const r = new KubernetesRegistry({
    service: SVC,
    namespace: NS,
    apiUrl: api.url,
    tokenFile,
    // nothing from this machine's environment or service-account folder
    env: {},
    serviceAccountDir: join(dir, 'no-service-account'),
    retryMs: 20,
    resyncMs: 0,
    ...options,
  });
  registries.push(r);
  return r;
}

const view = (r: KubernetesRegistry): string[] =>
  r
    .list()
    .map((w) => `${w.id}=${w.url}`)
    .sort();
const slice = (name: string, endpoints: FakeEndpoint[]) => endpointSlice(name, SVC, endpoints);

/**
 * Starts `r` on one worker w1, rotates the token (the file, then `pauseMs` later the API
 * server's accepted set), cuts the watch and adds w2: the registry must see w2, so it went on
 * with the new token.
 */
async function rotateTokenThenAddWorker(r: KubernetesRegistry, pauseMs: number): Promise<void> {
  api.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
  await r.start();
  await waitFor(() => api.openWatches === 1, 2000, 'the watch');
  writeFileSync(tokenFile, 'token-2\n');
  if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
  api.tokens = new Set(['token-2']);
  api.cutWatches();
  api.apply(
    slice('s1', [
      { ip: '10.0.0.1', pod: 'w1' },
      { ip: '10.0.0.2', pod: 'w2' },
    ]),
  );
  await waitFor(() => r.list().length === 2, 2000, 'w2 with the new token');
}

describe('KubernetesRegistry: list, then watch', () => {
  test('the first view: ready endpoints of every slice of the Service, at the http port, named by pod', async () => {
    api.apply(
      endpointSlice(
        'autoglm-workers-a',
        SVC,
        [
          { ip: '10.0.0.1', pod: 'worker-1' },
          { ip: '10.0.0.2', pod: 'worker-2', ready: false },
        ],
        [
          { name: 'metrics', port: 9100 },
          { name: 'http', port: 8000 },
        ],
      ),
    );
    api.apply(slice('autoglm-workers-b', [{ ip: '10.0.0.3', pod: 'worker-3' }, { ip: '10.0.0.9' }]));
    api.apply(endpointSlice('other-x', 'other', [{ ip: '10.0.9.9', pod: 'other-1' }]));
    api.apply(endpointSlice('autoglm-workers-v6', SVC, [{ ip: 'fd00::4', pod: 'worker-4' }], undefined, 'IPv6'));
    const r = registry();
    await r.start();
    expect(view(r)).toEqual([
      '10.0.0.9=http://10.0.0.9:8000',
      'worker-1=http://10.0.0.1:8000',
      'worker-3=http://10.0.0.3:8000',
      'worker-4=http://[fd00::4]:8000',
    ]);
    expect(api.counts.lists).toBe(1);
    expect(api.tokensSeen.every((t) => t === 'token-1')).toBe(true);
  });

  test('a pod becoming ready, one going terminating, a slice deleted: each arrives through the watch', async () => {
    api.apply(
      slice('s1', [
        { ip: '10.0.0.1', pod: 'w1' },
        { ip: '10.0.0.2', pod: 'w2', ready: false },
      ]),
    );
    api.apply(slice('s2', [{ ip: '10.0.0.3', pod: 'w3' }]));
    const r = registry();
    const changes: string[][] = [];
    r.onChange((ws) => changes.push(ws.map((w) => w.id).sort()));
    await r.start();
    expect(view(r)).toEqual(['w1=http://10.0.0.1:8000', 'w3=http://10.0.0.3:8000']);
    await waitFor(() => api.openWatches === 1, 2000, 'the watch');

    // w2 passes its readiness probe
    api.apply(
      slice('s1', [
        { ip: '10.0.0.1', pod: 'w1' },
        { ip: '10.0.0.2', pod: 'w2' },
      ]),
    );
    await waitFor(() => r.list().length === 3, 2000, 'w2 in the view');
    // w1 is deleted: terminating at once (ready stays true where the Service publishes
    // not-ready addresses), before any readiness probe fails
    api.apply(
      slice('s1', [
        { ip: '10.0.0.1', pod: 'w1', terminating: true },
        { ip: '10.0.0.2', pod: 'w2' },
      ]),
    );
    await waitFor(() => !r.list().some((w) => w.id === 'w1'), 2000, 'w1 out of the view');
    // the Service's second slice goes away
    api.delete('s2');
    await waitFor(() => !r.list().some((w) => w.id === 'w3'), 2000, 'w3 out of the view');
    expect(view(r)).toEqual(['w2=http://10.0.0.2:8000']);
    expect(changes).toEqual([['w1', 'w3'], ['w1', 'w2', 'w3'], ['w2', 'w3'], ['w2']]);
    // one listing; everything else came through the one watch
    expect([api.counts.lists, api.counts.watches, r.relists]).toEqual([1, 1, 0]);
  });

  test('a watch cut by the server is renewed from the last version: changes made meanwhile arrive, no listing', async () => {
    api.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
    const r = registry();
    await r.start();
    await waitFor(() => api.openWatches === 1, 2000, 'the watch');
    expect(api.cutWatches()).toBe(1);
    api.apply(
      slice('s1', [
        { ip: '10.0.0.1', pod: 'w1' },
        { ip: '10.0.0.2', pod: 'w2' },
      ]),
    );
    await waitFor(() => r.list().length === 2, 2000, 'w2 after the cut');
    expect(api.counts.watches).toBe(2);
    expect(api.counts.lists).toBe(1);
    // a watch the server ends cleanly (its timeoutSeconds) is renewed the same way
    await waitFor(() => api.openWatches === 1, 2000, 'the second watch');
    expect(api.endWatches()).toBe(1);
    api.delete('s1');
    await waitFor(() => r.list().length === 0, 2000, 'the slice deleted after the end');
    expect(api.counts.lists).toBe(1);
  });

  test.each(['event', 'status'] as const)('an expired resourceVersion (410 as %s) makes it list again', async (expiredAs) => {
    api.expiredAs = expiredAs;
    api.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
    const r = registry();
    await r.start();
    await waitFor(() => api.openWatches === 1, 2000, 'the watch');
    // Changes while the registry is disconnected, then a compaction: its version is gone.
    api.cutWatches();
    api.apply(slice('s1', [{ ip: '10.0.0.2', pod: 'w2' }]));
    api.compact();
    await waitFor(() => view(r).join() === 'w2=http://10.0.0.2:8000', 2000, 'the view from a new listing');
    expect(api.counts.expired).toBeGreaterThanOrEqual(1);
    expect(r.relists).toBe(1);
    expect(api.counts.lists).toBe(2);
    // and it watches again from the new listing
    await waitFor(() => api.openWatches === 1, 2000, 'a watch after the listing');
    api.apply(slice('s1', [{ ip: '10.0.0.3', pod: 'w3' }]));
    await waitFor(() => view(r).join() === 'w3=http://10.0.0.3:8000', 2000, 'w3 through the new watch');
  });

  test('bookmarks keep the version recent: after a compaction a renewed watch needs no listing', async () => {
    api.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
    api.apply(endpointSlice('other-x', 'other', [{ ip: '10.0.9.9', pod: 'o1' }]));
    const r = registry();
    await r.start();
    await waitFor(() => api.openWatches === 1, 2000, 'the watch');
    // Other Services' slices move the version on; this watch sees none of their events.
    for (let i = 2; i < 6; i++) api.apply(endpointSlice('other-x', 'other', [{ ip: `10.0.9.${i}`, pod: 'o1' }]));
    expect(r.resourceVersion).not.toBe(api.resourceVersion);
    api.bookmark();
    await waitFor(() => r.resourceVersion === api.resourceVersion, 2000, 'the bookmark');
    api.compact();
    api.cutWatches();
    await waitFor(() => api.openWatches === 1, 2000, 'the renewed watch');
    expect([api.counts.expired, api.counts.lists, r.relists]).toEqual([0, 1, 0]);
  });

  test('a silent watch (a half-open connection) is caught up by the periodic listing', async () => {
    api.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
    const r = registry({ resyncMs: 200 });
    // the same without the periodic listing: what a silent watch would leave
    const unsynced = registry({ resyncMs: 0 });
    await Promise.all([r.start(), unsynced.start()]);
    await waitFor(() => api.openWatches === 2, 2000, 'both watches');
    expect(api.freezeWatches()).toBe(2);
    api.apply(
      slice('s1', [
        { ip: '10.0.0.1', pod: 'w1' },
        { ip: '10.0.0.2', pod: 'w2' },
      ]),
    );
    await waitFor(() => r.list().length === 2, 3000, 'w2 through the resync');
    expect(r.watchRestarts).toBe(1);
    expect(unsynced.list().length).toBe(1);
    // the restarted watch is live again
    // (the frozen watch it gave up is closed; the other registry's is still held)
    await waitFor(() => api.counts.watches === 3 && api.openWatches === 2, 2000, 'the new watch');
    api.apply(slice('s1', [{ ip: '10.0.0.2', pod: 'w2' }]));
    await waitFor(() => r.list().length === 1, 2000, 'w1 gone through the new watch');
  });

  test('token rotation: a 401 re-reads the token file and the watch goes on with the new token', async () => {
    // the periodic re-read is out of the way: only the 401 can make it read the file again
    await rotateTokenThenAddWorker(registry({ tokenRefreshMs: 3_600_000 }), 0);
    expect(api.counts.unauthorized).toBe(1);
    expect(api.tokensSeen.slice(-2)).toEqual(['token-1', 'token-2']);
  });

  test('token rotation: the file is re-read periodically, so the next request already carries the new token', async () => {
    // 100 ms: two periodic re-reads before the API server stops accepting the old token
    await rotateTokenThenAddWorker(registry({ tokenRefreshMs: 50 }), 100);
    expect(api.counts.unauthorized).toBe(0);
    expect(api.tokensSeen.at(-1)).toBe('token-2');
  });

  test('a refused first listing (bad token, missing RBAC) fails start() and says what the service account needs', async () => {
    writeFileSync(tokenFile, 'wrong\n');
    const r = registry();
    const e = await r.start().then(
      () => null,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(KubernetesApiError);
    expect((e as KubernetesApiError).status).toBe(401);
    expect((e as Error).message).toMatch(
      /HTTP 401 Unauthorized.*get, list and watch on endpointslices\.discovery\.k8s\.io in namespace autoglm/,
    );
  });

  test('an unreachable API server at start: an empty view, then the workers once it answers', async () => {
    api.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
    const realUrl = api.url;
    const port = new URL(realUrl).port;
    await api.close();
    const r = registry({ apiUrl: realUrl });
    await r.start();
    expect(r.list()).toEqual([]);
    expect(r.lastError).toMatch(/ECONNREFUSED/);
    // the same address answers again
    api = await FakeKubeApi.start({ namespace: NS, tokens: ['token-1'], port: Number(port) });
    api.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
    await waitFor(() => r.list().length === 1, 5000, 'the view once the API answers');
    expect(r.lastError).toBeNull();
  });

  test('a listing that starts and never finishes times out: start() returns, and a later listing fills the view', async () => {
    api.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
    api.stallLists = true;
    const r = registry({ requestTimeoutMs: 200 });
    const hung = new Promise((_, reject) => setTimeout(() => reject(new Error('start() still waiting after 3 s')), 3000).unref());
    await Promise.race([r.start(), hung]);
    expect(r.list()).toEqual([]);
    expect(r.lastError).toMatch(/timeout|aborted/i);
    api.stallLists = false;
    await waitFor(() => r.list().length === 1, 3000, 'the view from a listing that finishes');
  });

  test('stop() ends the watch and no request follows', async () => {
    api.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
    const r = registry({ resyncMs: 50 });
    await r.start();
    await waitFor(() => api.openWatches === 1, 2000, 'the watch');
    await r.stop();
    await waitFor(() => api.openWatches === 0, 2000, 'the watch closed');
    const seen = api.tokensSeen.length;
    api.apply(slice('s1', []));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(api.tokensSeen.length).toBe(seen);
    expect(r.list().length).toBe(1);
  });
});

describe('KubernetesRegistry over TLS', () => {
  test('in a pod: API address from KUBERNETES_SERVICE_HOST/PORT, token, CA and namespace from the service-account folder', async () => {
    const tls = selfSignedCert();
    const secure = await FakeKubeApi.start({ namespace: NS, tokens: ['sa-token'], tls });
    try {
      secure.apply(slice('s1', [{ ip: '10.0.0.1', pod: 'w1' }]));
      const sa = join(dir, 'serviceaccount');
      mkdirSync(sa);
      writeFileSync(join(sa, 'token'), 'sa-token');
      writeFileSync(join(sa, 'ca.crt'), tls.cert);
      writeFileSync(join(sa, 'namespace'), NS);
      const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: new URL(secure.url).port };
      const r = new KubernetesRegistry({ service: SVC, serviceAccountDir: sa, env, resyncMs: 0, retryMs: 20 });
      registries.push(r);
      expect(r.source).toBe(`${NS}/${SVC}`);
      await r.start();
      expect(view(r)).toEqual(['w1=http://10.0.0.1:8000']);

      // without the CA the certificate is refused: no view, and the reason
      const untrusted = registry({ apiUrl: secure.url, tokenFile: join(sa, 'token') });
      await untrusted.start();
      expect(untrusted.list()).toEqual([]);
      expect(untrusted.lastError).toMatch(/self[- ]signed|certificate/i);
    } finally {
      await secure.close();
    }
  });
});
