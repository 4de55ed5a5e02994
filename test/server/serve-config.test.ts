import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { DEFAULT_MODEL_DIR, parseServeConfig, serveHelp, type ServeConfig } from '../../src/cli/serve-config.js';

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}): ServeConfig => {
  const c = parseServeConfig(argv, env);
  if (c === 'help') throw new Error('unexpected help');
  return c;
};

test('defaults: the bundled model on 127.0.0.1:8000, auth not disabled', () => {
  const c = parse([]);
  expect(c.modelDir).toBe(DEFAULT_MODEL_DIR);
  expect(DEFAULT_MODEL_DIR.endsWith(join('models', 'demo-stories'))).toBe(true);
  expect(c.usingDefaultModel).toBe(true);
  expect([c.host, c.port, c.authDisabled, c.apiKeys]).toEqual(['127.0.0.1', 8000, false, []]);
  expect(c.rateLimit).toBeUndefined();
});

test('flags win over AUTOGLM_* env, env fills the rest', () => {
  const dir = mkdtempSync(join(tmpdir(), 'autoglm-keys-'));
  writeFileSync(join(dir, 'keys'), 'sk-file\n# comment\n');
  const c = parse(['--port', '9001', '--model', '/m', '--api-keys', 'sk-a, sk-b', '--no-auth'], {
    AUTOGLM_PORT: '7000',
    AUTOGLM_HOST: '0.0.0.0',
    AUTOGLM_API_KEY_FILE: join(dir, 'keys'),
    AUTOGLM_RATE_LIMIT_RPS: '2.5',
    AUTOGLM_CLUSTER_SECRET: 'cs',
    AUTOGLM_DRAIN_TIMEOUT_MS: '1500',
  });
  expect(c.port).toBe(9001);
  expect(c.host).toBe('0.0.0.0');
  expect(c.modelDir).toBe('/m');
  expect(c.usingDefaultModel).toBe(false);
  expect(c.apiKeys).toEqual(['sk-a', 'sk-b', 'sk-file']);
  expect(c.authDisabled).toBe(true);
  expect(c.rateLimit).toEqual({ requestsPerSecond: 2.5, burst: 5 });
  expect(c.clusterSecret).toBe('cs');
  expect(c.drainTimeoutMs).toBe(1500);
  expect(c.engine.kernelProfile).toBeUndefined();
  expect(parse(['--kernel-profile', 'gpu']).engine.kernelProfile).toBe('gpu');
  expect(parse([], { AUTOGLM_KERNEL_PROFILE: 'cpu' }).engine.kernelProfile).toBe('cpu');
});

test.each([
  [['--port', 'abc'], 'port'],
  [['--max-pending-requests=-1'], 'max-pending-requests'],
  [['--tls-key', 'k.pem'], 'tls-cert'],
  [['--api-key-file', '/nonexistent/keys'], 'api-key-file'],
  [['--kernel-profile', 'fast'], 'kernel-profile'],
])('bad value %j names the flag', (argv, param) => {
  let caught: unknown;
  try {
    parse(argv);
  } catch (e) {
    caught = e;
  }
  expect(isAutoGlmError(caught, 'invalid_request')).toBe(true);
  expect((caught as { param: string }).param).toBe(param);
});

test('unknown flags are refused; --help lists every flag with its env name', () => {
  expect(() => parse(['--prot', '1'])).toThrow(/Unknown option/);
  expect(parseServeConfig(['--help'], {})).toBe('help');
  expect(serveHelp()).toContain('--api-key-file <value>');
  expect(serveHelp()).toContain('[AUTOGLM_CLUSTER_SECRET]');
});
