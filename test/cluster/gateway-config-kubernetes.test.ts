import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parseGatewayConfig } from '../../src/cluster/gateway/config.js';
import { KubernetesRegistry } from '../../src/cluster/registry/kubernetes-registry.js';
import { isAutoGlmError } from '../../src/errors.js';
import { ROOT } from './support/processes.js';

// `autoglm gateway --registry kubernetes` and its --k8s-* flags (AUTOGLM_K8S_* fallbacks).
const CLI = join(ROOT, 'dist/src/cli/main.js');
const parse = (argv: string[], env: Record<string, string> = {}) => {
  const c = parseGatewayConfig(argv, env, () => 'generated-key');
  if (c === 'help') throw new Error('help');
  return c;
};
const paramOf = (argv: string[], env: Record<string, string> = {}): string | null => {
  try {
    parse(argv, env).createRegistry();
    return null;
  } catch (e) {
    expect(isAutoGlmError(e, 'invalid_request'), String(e)).toBe(true);
    return (e as { param?: string }).param ?? '';
  }
};
/** Out of a pod: the API URL and namespace are needed. */
const OUTSIDE = ['--k8s-api-url', 'http://127.0.0.1:8001', '--k8s-namespace', 'autoglm'];

describe('autoglm gateway --registry kubernetes', () => {
  test('flags and AUTOGLM_K8S_* fallbacks build the registry', () => {
    const c = parse(['--registry', 'kubernetes', '--k8s-service', 'autoglm-workers', '--k8s-port-name', 'http', ...OUTSIDE]);
    expect(c.registryKind).toBe('kubernetes');
    const r = c.createRegistry();
    expect(r).toBeInstanceOf(KubernetesRegistry);
    expect((r as KubernetesRegistry).source).toBe('autoglm/autoglm-workers');
    const fromEnv = parse([], {
      AUTOGLM_REGISTRY: 'kubernetes',
      AUTOGLM_K8S_SERVICE: 'w',
      AUTOGLM_K8S_NAMESPACE: 'ns',
      AUTOGLM_K8S_API_URL: 'http://127.0.0.1:8001',
      AUTOGLM_K8S_RESYNC_MS: '0',
    }).createRegistry();
    expect((fromEnv as KubernetesRegistry).source).toBe('ns/w');
  });

  test.each([
    [['--registry', 'kubernetes', ...OUTSIDE], {}, 'k8s-service'],
    [['--registry', 'kubernetes', '--k8s-service', 'Workers', ...OUTSIDE], {}, 'k8s-service'],
    [
      ['--registry', 'kubernetes', '--k8s-service', 'w', '--k8s-namespace', 'a_b', '--k8s-api-url', 'http://127.0.0.1:1'],
      {},
      'k8s-namespace',
    ],
    [['--registry', 'kubernetes', '--k8s-service', 'w', '--k8s-port-name', 'HTTP', ...OUTSIDE], {}, 'k8s-port-name'],
    [['--registry', 'kubernetes', '--k8s-service', 'w', '--k8s-resync-ms', 'soon', ...OUTSIDE], {}, 'k8s-resync-ms'],
    [['--registry', 'kubernetes', '--k8s-service', 'w', '--k8s-api-url', 'kubernetes:443', '--k8s-namespace', 'n'], {}, 'k8s-api-url'],
    [['--registry', 'kubernetes', '--k8s-service', 'w', '--k8s-token-file', '/nonexistent/token', ...OUTSIDE], {}, 'k8s-token-file'],
    [['--registry', 'dns', '--dns-name', 'w.test', '--k8s-service', 'w'], {}, 'k8s-service'],
    [['--registry', 'etcd', '--etcd', 'http://127.0.0.1:2379'], { AUTOGLM_K8S_NAMESPACE: 'n' }, 'k8s-namespace'],
    [['--registry', 'kubernetes', '--k8s-service', 'w', '--k8s-service', 'v', ...OUTSIDE], {}, 'k8s-service'],
  ])('%j %j: refused, naming --%s', (argv, env, param) => {
    expect(paramOf(argv, env)).toBe(param);
  });

  test('a CA file is read at start-up', () => {
    const dir = mkdtempSync(join(tmpdir(), 'autoglm-k8s-ca-'));
    try {
      writeFileSync(join(dir, 'ca.crt'), 'CA');
      expect(paramOf(['--registry', 'kubernetes', '--k8s-service', 'w', '--k8s-ca-file', join(dir, 'ca.crt'), ...OUTSIDE])).toBeNull();
      expect(paramOf(['--registry', 'kubernetes', '--k8s-service', 'w', '--k8s-ca-file', join(dir, 'missing'), ...OUTSIDE])).toBe(
        'k8s-ca-file',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the CLI: outside a pod without --k8s-api-url it exits 2 with one line naming the flag; --help lists the flags', () => {
    const env = { ...process.env };
    delete env.KUBERNETES_SERVICE_HOST;
    delete env.KUBERNETES_SERVICE_PORT;
    const r = spawnSync(process.execPath, [CLI, 'gateway', '--registry', 'kubernetes', '--k8s-service', 'w', '--port', '0', '--no-auth'], {
      encoding: 'utf8',
      env,
      timeout: 20_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^autoglm: .*--k8s-api-url/);
    const help = spawnSync(process.execPath, [CLI, 'gateway', '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    for (const flag of ['k8s-service', 'k8s-namespace', 'k8s-port-name', 'k8s-api-url', 'k8s-token-file', 'k8s-ca-file', 'k8s-resync-ms'])
      expect(help.stdout).toContain(`--${flag} <value>`);
    expect(help.stdout).toContain('[AUTOGLM_K8S_SERVICE]');
    expect(help.stdout).toMatch(/--registry <value> .*kubernetes/);
  });
});
