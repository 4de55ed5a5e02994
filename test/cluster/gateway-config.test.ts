import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { buildGateway, MAX_ATTEMPTS } from '../../src/cluster/gateway/build-gateway.js';
import { parseGatewayConfig } from '../../src/cluster/gateway/config.js';
import { HealthMonitor } from '../../src/cluster/health-monitor.js';
import { StaticRegistry } from '../../src/cluster/registry/static-registry.js';
import { ROOT } from './support/processes.js';

const parse = (argv: string[], env: Record<string, string> = {}) => {
  const c = parseGatewayConfig(argv, env, () => 'generated-key');
  if (c === 'help') throw new Error('help');
  return c;
};

describe('autoglm gateway configuration', () => {
  test('defaults: heartbeat registry on 127.0.0.1:9000, resume on, a generated key when none is given', () => {
    const c = parse([]);
    expect([c.host, c.port, c.registryKind, c.generatedKey]).toEqual(['127.0.0.1', 9000, 'heartbeat', 'generated-key']);
    expect(c.options.resume).toBe(true);
    expect(c.options.runtimeLoraUpdates).toBeUndefined();
    expect(c.options.auth.apiKeys).toEqual(['generated-key']);
    expect(c.createRegistry().kind).toBe('heartbeat');
  });

  test('flags and AUTOGLM_* env fallbacks build every backend and tuning option', () => {
    const c = parse(
      ['--registry', 'dns', '--dns-name', 'w.test', '--dns-type', 'SRV', '--probe-interval-ms', '100', '--prefix-affinity', '--no-resume'],
      {
        AUTOGLM_API_KEYS: 'a,b',
        AUTOGLM_CLUSTER_SECRET: 's',
        AUTOGLM_MAX_ATTEMPTS: '5',
      },
    );
    expect(c.createRegistry().kind).toBe('dns');
    expect(c.options.auth.apiKeys).toEqual(['a', 'b']);
    expect(c.generatedKey).toBeUndefined();
    expect(c.options.clusterSecret).toBe('s');
    expect(c.options.retry?.maxAttempts).toBe(5);
    expect(c.options.health?.probeIntervalMs).toBe(100);
    expect(c.options.balancer?.affinity).toEqual({});
    expect(c.options.resume).toBe(false);
    expect(parse(['--allow-runtime-lora-updates']).options.runtimeLoraUpdates).toBe(true);
    expect(parse([], { AUTOGLM_ALLOW_RUNTIME_LORA_UPDATES: '1' }).options.runtimeLoraUpdates).toBe(true);
    expect(parse(['--registry', 'static', '--workers', 'http://a:1,http://b:2']).createRegistry().kind).toBe('static');
    expect(parse(['--registry', 'etcd', '--etcd', 'http://127.0.0.1:2379']).createRegistry().kind).toBe('etcd');
  });

  test('API keys may carry their own rate limit: KEY:RPS:BURST in --api-keys and --api-key-file; RPS 0 exempts a key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'autoglm-keys-'));
    try {
      const file = join(dir, 'keys');
      writeFileSync(file, '# team keys\nsk-team:0.5:3\n\nsk-plain\n');
      const c = parse(['--api-keys', 'a, b:2.5:5 ,c:0:0', '--api-key-file', file, '--rate-limit-rps', '1']);
      expect(c.options.auth.apiKeys).toEqual(['a', 'b', 'c', 'sk-team', 'sk-plain']);
      expect(c.options.keyRateLimits).toEqual(
        new Map([
          ['b', { requestsPerSecond: 2.5, burst: 5 }],
          ['c', null],
          ['sk-team', { requestsPerSecond: 0.5, burst: 3 }],
        ]),
      );
      // The other keys share the default.
      expect(c.options.rateLimit).toEqual({ requestsPerSecond: 1, burst: 2 });
      expect(parse(['--api-keys', 'a,b']).options.keyRateLimits).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('API keys may carry a priority floor: KEY:RPS:BURST:PRIORITY (BURST empty with RPS 0)', () => {
    const c = parse(['--api-keys', 'live,batch:0::10,bulk:2:4:5']);
    expect(c.options.auth.apiKeys).toEqual(['live', 'batch', 'bulk']);
    expect(c.options.keyPriorities).toEqual(
      new Map([
        ['batch', 10],
        ['bulk', 5],
      ]),
    );
    expect(c.options.keyRateLimits).toEqual(
      new Map([
        ['batch', null],
        ['bulk', { requestsPerSecond: 2, burst: 4 }],
      ]),
    );
    expect(parse(['--api-keys', 'a,b:1:1']).options.keyPriorities).toBeUndefined();
  });

  test.each([
    ['sk-secret:5', 'is not in the expected shape'],
    ['sk-secret:x:1', "has RPS 'x'"],
    ['sk-secret:-1:1', "has RPS '-1'"],
    ['sk-secret:1:0', "has BURST '0'"],
    ['sk-secret:1:1.5', "has BURST '1.5'"],
    ['sk-secret:1:', "has BURST ''"],
    [':1:1', 'has an empty key'],
    ['a:b:1:2:3', 'is not in the expected shape'],
    ['sk-secret:b:1:2', "has RPS 'b'"],
    ['sk-secret:0::x', "has PRIORITY 'x'"],
    ['sk-secret:0::1.5', "has PRIORITY '1.5'"],
    ['sk-secret:1:1:', "has PRIORITY ''"],
  ])('a bad key limit %j names the flag and does not print the key', (entry, why) => {
    const dir = mkdtempSync(join(tmpdir(), 'autoglm-keys-'));
    try {
      const file = join(dir, 'keys');
      writeFileSync(file, `ok\n${entry}\n`);
      for (const [argv, param] of [
        [['--api-keys', `ok,${entry}`], 'api-keys'],
        [['--api-key-file', file], 'api-key-file'],
      ] as const) {
        try {
          parse([...argv]);
          expect.unreachable();
        } catch (e) {
          expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
          expect((e as { param?: string }).param).toBe(param);
          expect((e as Error).message).toContain(`--${param}`);
          expect((e as Error).message).toContain(why);
          expect((e as Error).message).toContain('KEY:RPS:BURST');
          expect((e as Error).message).not.toContain('sk-secret');
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an unreadable --api-key-file names the flag', () => {
    expect(() => parse(['--api-key-file', '/nonexistent/keys'])).toThrow(/--api-key-file/);
  });

  test.each([
    [['--registry', 'zookeeper'], 'registry'],
    [['--registry', 'static'], 'workers'],
    [['--registry', 'dns'], 'dns-name'],
    [['--registry', 'etcd'], 'etcd'],
    [['--registry', 'etcd', '--etcd', 'notaurl'], 'etcd'],
    [['--registry', 'static', '--workers', 'http://127.0.0.1:1,notaurl'], 'workers'],
    [['--port', 'abc'], 'port'],
    [['--balance', 'random'], 'balance'],
    // no upper bound: 1e9 meant "retry until the deadline"
    [['--max-attempts', '101'], 'max-attempts'],
    // the first cool-down was cut to the longest one without a word
    [['--ejection-ms', '5000', '--max-ejection-ms', '1000'], 'ejection-ms'],
  ])('bad configuration %j names the flag', (argv, param) => {
    try {
      parse(argv);
      expect.unreachable();
    } catch (e) {
      expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
      expect((e as { param?: string }).param).toBe(param);
    }
  });

  test('--ejection-ms above --max-ejection-ms names both, and which is the default', () => {
    const message = (argv: string[], env: Record<string, string> = {}) => {
      try {
        parse(argv, env);
      } catch (e) {
        return (e as Error).message;
      }
      return 'accepted';
    };
    expect(message(['--ejection-ms', '5000', '--max-ejection-ms', '1000'])).toMatch(
      /^--ejection-ms 5000 is above --max-ejection-ms 1000: the first cool-down cannot be longer/,
    );
    expect(message(['--ejection-ms', '60000'])).toMatch(/^--ejection-ms 60000 is above --max-ejection-ms 30000 \(the default\)/);
    expect(message([], { AUTOGLM_MAX_EJECTION_MS: '500' })).toMatch(
      /^--ejection-ms 1000 \(the default\) is above AUTOGLM_MAX_EJECTION_MS \(--max-ejection-ms\) 500/,
    );
    expect(message(['--ejection-ms', '2000', '--max-ejection-ms', '2000', '--max-attempts', '100'])).toBe('accepted');
  });

  test('the library refuses the same: retry.maxAttempts past the maximum, baseEjectionMs above maxEjectionMs', async () => {
    const e = await buildGateway({ auth: { apiKeys: [] }, registry: new StaticRegistry([]), retry: { maxAttempts: 1e9 } }).catch(
      (x: unknown) => x,
    );
    expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
    expect((e as { param?: string }).param).toBe('retry.maxAttempts');
    expect((e as Error).message).toBe(`retry.maxAttempts must be an integer from 1 to ${MAX_ATTEMPTS}, got 1000000000.`);
    expect(() => new HealthMonitor({ baseEjectionMs: 40_000 })).toThrow(
      'baseEjectionMs 40000 is above maxEjectionMs 30000 (the default): the first cool-down cannot be longer than the longest one.',
    );
  });

  test('--allowed-origins: CORS on a real gateway, preflight before auth, the header on its errors too; a bad origin names the flag', async () => {
    const origin = 'https://app.example.com';
    expect(parse([]).options.cors).toBeUndefined();
    const config = parse(['--registry', 'static', '--workers', 'http://127.0.0.1:1', '--allowed-origins', origin]);
    expect(config.options.cors).toEqual({ allowedOrigins: [origin] });
    expect(() => parse([], { AUTOGLM_ALLOWED_ORIGINS: 'https://app.example.com/ui' })).toThrow(
      "AUTOGLM_ALLOWED_ORIGINS (--allowed-origins): 'https://app.example.com/ui' is not an origin",
    );
    const g = await buildGateway({ auth: { apiKeys: ['sk-g'] }, registry: new StaticRegistry([]), cors: config.options.cors! });
    try {
      const url = await g.listen({ port: 0, host: '127.0.0.1' });
      const pre = await fetch(`${url}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
      });
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe(origin);
      const none = await fetch(`${url}/v1/models`, { headers: { origin, authorization: 'Bearer sk-g' } });
      expect(none.status).toBe(503);
      expect(none.headers.get('access-control-allow-origin')).toBe(origin);
      expect(((await none.json()) as { error: { code: string } }).error.code).toBe('no_healthy_worker');
      const other = await fetch(`${url}/v1/models`, { headers: { origin: 'https://other.example.org', authorization: 'Bearer sk-g' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      await other.arrayBuffer();
    } finally {
      await g.close();
    }
  });

  test('the CLI prints its flags with --help', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'dist/src/cli/main.js'), 'gateway', '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('--registry');
    expect(r.stdout).toContain('[AUTOGLM_CLUSTER_SECRET]');
  });
});
