import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { checkKubernetesName, resolveKubernetesAccess, TokenFile } from '../../src/cluster/registry/kubernetes-access.js';
import { isAutoGlmError } from '../../src/errors.js';

// Where the kubernetes registry finds the API server and its credentials, and the errors
// (naming the flag that would fix it) when it cannot.
let dir: string;
let sa: string;
const IN_POD = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'autoglm-k8s-access-'));
  sa = join(dir, 'serviceaccount');
  mkdirSync(sa);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function fillServiceAccount(files: { token?: string; ca?: string; namespace?: string }): void {
  if (files.token !== undefined) writeFileSync(join(sa, 'token'), files.token);
  if (files.ca !== undefined) writeFileSync(join(sa, 'ca.crt'), files.ca);
  if (files.namespace !== undefined) writeFileSync(join(sa, 'namespace'), files.namespace);
}

/** The invalid_request error's param, or null when nothing was thrown. */
function paramOf(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (e) {
    expect(isAutoGlmError(e, 'invalid_request'), String(e)).toBe(true);
    return (e as { param?: string }).param ?? '';
  }
}

describe('resolveKubernetesAccess', () => {
  test('in a pod: the API service address, and token, CA and namespace from the service-account folder', () => {
    fillServiceAccount({ token: 'tok\n', ca: 'CA', namespace: 'prod\n' });
    const a = resolveKubernetesAccess({ env: IN_POD, serviceAccountDir: sa });
    expect([a.apiUrl, a.namespace, a.ca?.toString(), a.tokens?.current()]).toEqual(['https://10.96.0.1:443', 'prod', 'CA', 'tok']);
    // an IPv6 service address is bracketed
    expect(resolveKubernetesAccess({ env: { ...IN_POD, KUBERNETES_SERVICE_HOST: 'fd00::1' }, serviceAccountDir: sa }).apiUrl).toBe(
      'https://[fd00::1]:443',
    );
  });

  test('explicit options win over the pod environment', () => {
    fillServiceAccount({ token: 'tok', ca: 'CA', namespace: 'prod' });
    const token = join(dir, 'other-token');
    writeFileSync(token, 'other');
    const a = resolveKubernetesAccess({
      env: IN_POD,
      serviceAccountDir: sa,
      apiUrl: 'http://127.0.0.1:8001/',
      namespace: 'dev',
      tokenFile: token,
    });
    expect([a.apiUrl, a.namespace, a.tokens?.current()]).toEqual(['http://127.0.0.1:8001', 'dev', 'other']);
  });

  test('outside a pod with a URL and a namespace: no token (kubectl proxy), the system CAs', () => {
    const a = resolveKubernetesAccess({ env: {}, serviceAccountDir: sa, apiUrl: 'http://127.0.0.1:8001', namespace: 'default' });
    expect([a.tokens, a.ca]).toEqual([null, undefined]);
  });

  test.each([
    ['outside a pod without --k8s-api-url', {}, {}, 'k8s-api-url'],
    ['a URL that is not http(s)', { apiUrl: 'ftp://x', namespace: 'n' }, {}, 'k8s-api-url'],
    ['in a pod without a token (automount off)', { env: IN_POD }, { namespace: 'n' }, 'k8s-token-file'],
    [
      'a token file that does not exist',
      { apiUrl: 'http://127.0.0.1:1', namespace: 'n', tokenFile: '/nonexistent/token' },
      {},
      'k8s-token-file',
    ],
    ['an empty token file', { env: IN_POD }, { token: '\n', namespace: 'n' }, 'k8s-token-file'],
    ['a CA file that does not exist', { env: IN_POD, caFile: '/nonexistent/ca.crt' }, { token: 't', namespace: 'n' }, 'k8s-ca-file'],
    ['no namespace anywhere', { apiUrl: 'http://127.0.0.1:1' }, {}, 'k8s-namespace'],
    ['an empty namespace file', { env: IN_POD }, { token: 't', namespace: '\n' }, 'k8s-namespace'],
  ] as const)('%s: invalid_request naming --%s', (_what, options, files, param) => {
    fillServiceAccount(files);
    expect(paramOf(() => resolveKubernetesAccess({ env: {}, serviceAccountDir: sa, ...options }))).toBe(param);
  });
});

describe('TokenFile', () => {
  test('re-reads the file once the refresh period is over; reload() says whether it changed; a vanished file keeps the last token', async () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'one');
    const t = new TokenFile(file, 300);
    writeFileSync(file, 'two');
    expect(t.current()).toBe('one');
    await new Promise((r) => setTimeout(r, 350));
    expect(t.current()).toBe('two');
    expect(t.reload()).toBe(false);
    writeFileSync(file, 'three');
    expect(t.reload()).toBe(true);
    rmSync(file);
    expect(t.reload()).toBe(false);
    expect(t.current()).toBe('three');
    expect(t.lastError).toMatch(/ENOENT/);
  });
});

test('checkKubernetesName: RFC 1123 labels, port names at most 15 characters', () => {
  expect(checkKubernetesName('autoglm-workers', 'service', 'k8s-service')).toBe('autoglm-workers');
  for (const bad of ['Workers', 'workers.default', '-w', 'w-', '', 'a'.repeat(64)])
    expect(paramOf(() => checkKubernetesName(bad, 'service', 'k8s-service'))).toBe('k8s-service');
  expect(paramOf(() => checkKubernetesName('a-very-long-port', 'port name', 'k8s-port-name'))).toBe('k8s-port-name');
});
