/**
 * How the `autoglm` CLI answers an operator's mistakes: one line naming the flag (or the
 * AUTOGLM_* variable) and what it accepts, exit code 2, before anything starts; runtime
 * failures (a port in use) one line and exit 1. Never a stack trace or a silently dropped value.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runBench } from '../../src/cli/bench.js';
import { parseServeConfig } from '../../src/cli/serve-config.js';
import { parseGatewayConfig } from '../../src/cluster/gateway/config.js';
import { isAutoGlmError } from '../../src/errors.js';
import { ROOT } from '../cluster/support/processes.js';

const MAIN = join(ROOT, 'dist/src/cli/main.js');

/** Runs the built CLI with a clean AUTOGLM_* environment. */
function cli(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AUTOGLM_')));
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 15_000, env: { ...base, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The error a parse throws; fails the test when there is none. */
function errorOf(f: () => unknown): Error & { param?: string } {
  try {
    f();
  } catch (e) {
    expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
    return e as Error & { param?: string };
  }
  throw new Error('expected an invalid_request error');
}

const serve = (argv: string[], env: NodeJS.ProcessEnv = {}) => parseServeConfig(argv, env);
const gateway = (argv: string[], env: NodeJS.ProcessEnv = {}) => parseGatewayConfig(argv, env, () => 'generated');

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'autoglm-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('exit codes and one-line errors (the built CLI)', () => {
  test('bad usage exits 2 with one line on stderr naming the flag; no stack, no server started', () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['serve', '--port', '65536'], {}, /--port must be an integer from 0 to 65535, got '65536'/],
      [['serve', '--model', join(dir, 'missing')], {}, /--model .*missing is not a folder/],
      [['serve', '--log-level', 'loud'], {}, /--log-level must be one of fatal, error/],
      [['serve', '--tls-key', join(dir, 'k.pem'), '--tls-cert', join(dir, 'c.pem')], {}, /Cannot read --tls-key/],
      [['serve'], { AUTOGLM_PORT: '70000' }, /AUTOGLM_PORT \(--port\) must be an integer from 0 to 65535/],
      [['gateway', '--prot', '1'], {}, /Unknown option '--prot' \(autoglm gateway --help lists the flags\)/],
      // bench took the last of a repeated flag, where serve and gateway refuse it
      [['bench', 'serve', '--num-requests', '1', '--num-requests', '2'], {}, /--num-requests was given more than once/],
      // parseArgs' three lines for a value that starts with a dash, on one
      [['serve', '--port', '-1'], {}, /Option '--port' argument is ambiguous\. .*'--port=-XYZ'/],
      [
        ['bench', 'serve', '--url', 'http://127.0.0.1:1', '--timeout-ms', '99999999999'],
        {},
        /--timeout-ms must be an integer from 1 to 2147483647/,
      ],
      // was a fetch failure ("could not list models at zz/v1/models") exiting 1, after start-up
      [['bench', 'serve', '--url', 'zz'], {}, /--url must be an http\(s\) URL .*got 'zz'/],
      // was named --model
      [['serve'], { AUTOGLM_MODEL: join(dir, 'missing') }, /AUTOGLM_MODEL \(--model\) .*missing is not a folder/],
      // was refused only when the model loaded, after the port was bound (exit 1)
      [
        ['serve', '--port', '0'],
        { AUTOGLM_GPU_EVENT_POLLING: 'sometimes' },
        /AUTOGLM_GPU_EVENT_POLLING must be one of auto, spin, paced, got 'sometimes'/,
      ],
      // was refused by the engine after the port was bound and the weights were uploaded (exit 1)
      [['serve', '--port', '0', '--kv-cache-bytes', '1000'], {}, /--kv-cache-bytes 1000 cannot hold one sequence of the context length/],
    ];
    for (const [args, env, message] of cases) {
      const r = cli(args, env);
      expect({ args, status: r.status }).toEqual({ args, status: 2 });
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stderr).not.toContain('Server listening');
    }
  });

  test('no command and an unknown command are usage errors (2); --help is not (0)', () => {
    expect(cli([]).status).toBe(2);
    expect(cli(['serv']).status).toBe(2);
    expect(cli(['--help']).status).toBe(0);
  });

  describe('a port already in use', () => {
    let blocker: Server;
    let port: number;
    beforeAll(async () => {
      blocker = createServer();
      await new Promise<void>((done) => blocker.listen(0, '127.0.0.1', done));
      port = (blocker.address() as { port: number }).port;
    });
    afterAll(() => new Promise<void>((done) => blocker.close(() => done())));

    test('serve and gateway name --host/--port in one line and exit 1, not a bare EADDRINUSE', () => {
      for (const args of [
        ['serve', '--model', dir, '--port', String(port)],
        ['gateway', '--port', String(port)],
      ]) {
        const r = cli(args);
        expect(r.status).toBe(1);
        expect(r.stderr).toContain(`autoglm: cannot listen on --host 127.0.0.1 --port ${port}: the port is already in use`);
      }
    });
  });
});

describe('numbers: plain decimals within the flag bounds, from a flag or its variable', () => {
  test.each([
    // Number() read ' ' as 0 (a random port), and took hex and exponents
    [['--port', ' '], 'port'],
    [['--port', '0x1f90'], 'port'],
    [['--max-body-bytes', '1e20'], 'max-body-bytes'],
    // above 2^31-1 ms a timer fires after 1 ms: a "long" drain aborted every request at once
    [['--drain-timeout-ms', '3000000000'], 'drain-timeout-ms'],
    // 0 here means every request is refused (or an engine that fails only after listening)
    [['--max-choices', '0'], 'max-choices'],
    [['--max-pending-requests', '0'], 'max-pending-requests'],
    [['--max-batch-sequences', '0'], 'max-batch-sequences'],
    // was accepted, then failed after the upload with an untyped RangeError
    [['--max-batch-sequences', '100000'], 'max-batch-sequences'],
    [['--max-batch-tokens', '1000000000'], 'max-batch-tokens'],
    [['--prompt-logprobs-rows=-1'], 'prompt-logprobs-rows'],
    [['--rate-limit-rps', '1', '--rate-limit-burst', '0'], 'rate-limit-burst'],
    [['--tokenizer-threads', '100000'], 'tokenizer-threads'],
  ])('serve %j is refused naming the flag', (argv, param) => {
    const e = errorOf(() => serve(argv));
    expect(e.param).toBe(param);
    expect(e.message).toContain(`--${param} must be`);
  });

  test.each([
    [['--port', '70000'], 'port'],
    [['--registry', 'dns', '--dns-name', 'w', '--dns-port', '0'], 'dns-port'],
    [['--probe-interval-ms', '0'], 'probe-interval-ms'],
    [['--first-byte-timeout-ms', '0'], 'first-byte-timeout-ms'],
    [['--request-timeout-ms', '1e12'], 'request-timeout-ms'],
    [['--request-timeout-ms', '3000000000'], 'request-timeout-ms'],
    [['--max-attempts', '0'], 'max-attempts'],
    [['--unhealthy-threshold', '0'], 'unhealthy-threshold'],
    [['--prefix-affinity', '--affinity-max-imbalance', '0.5'], 'affinity-max-imbalance'],
  ])('gateway %j is refused naming the flag', (argv, param) => {
    expect(errorOf(() => gateway(argv)).param).toBe(param);
  });

  test('bounds that allow 0 keep it, and the largest timer delay is accepted', () => {
    const c = serve(['--port', '0', '--tokenizer-threads', '0', '--drain-timeout-ms', '2147483647']);
    expect(c === 'help' ? null : [c.port, c.tokenizerThreads, c.drainTimeoutMs]).toEqual([0, 0, 2147483647]);
    const g = gateway(['--client-request-timeout-ms', '0', '--shutdown-timeout-ms', '0']);
    expect(g === 'help' ? null : [g.options.clientRequestTimeoutMs, g.options.closeTimeoutMs]).toEqual([0, 0]);
  });

  test('AUTOGLM_GPU_EVENT_POLLING, a variable with no flag, is checked with the flags and named', () => {
    const e = errorOf(() => serve([], { AUTOGLM_GPU_EVENT_POLLING: 'fast' }));
    expect([e.param, e.message]).toEqual([
      'AUTOGLM_GPU_EVENT_POLLING',
      "AUTOGLM_GPU_EVENT_POLLING must be one of auto, spin, paced, got 'fast'",
    ]);
    expect(serve([], { AUTOGLM_GPU_EVENT_POLLING: 'paced' })).not.toBe('help');
  });

  test('--kv-cache-bytes too small for one sequence of the model is refused with the flags, naming it and the least that does', () => {
    // demo-stories: 4 layers x 4 KV heads x head_dim 32, K and V, f16: 2048 bytes per token, 512 tokens of context
    const demo = ['--model', 'models/demo-stories'];
    const e = errorOf(() => serve([...demo, '--kv-cache-bytes', '1048575']));
    expect(e.param).toBe('kv-cache-bytes');
    expect(e.message).toBe(
      '--kv-cache-bytes 1048575 cannot hold one sequence of the context length: 512 tokens x 2048 bytes per token ' +
        '(f16 KV cache, blocks of 16 tokens) needs 1048576; raise --kv-cache-bytes to at least that or lower --max-context-tokens',
    );
    expect(serve([...demo, '--kv-cache-bytes', '1048576'])).not.toBe('help');
    // a shorter context needs less; --force-f32 twice as much
    expect(serve([...demo, '--kv-cache-bytes', '229376', '--max-context-tokens', '100'])).not.toBe('help');
    expect(errorOf(() => serve([...demo, '--kv-cache-bytes', '1048576', '--force-f32'])).message).toMatch(/needs 2097152/);
    expect(errorOf(() => serve(demo, { AUTOGLM_KV_CACHE_BYTES: '1000' })).message).toMatch(
      /^AUTOGLM_KV_CACHE_BYTES \(--kv-cache-bytes\) 1000 cannot hold/,
    );
    // a folder without a readable config.json is left to the load, which names what is wrong
    expect(serve(['--model', dir, '--kv-cache-bytes', '1'])).not.toBe('help');
  });

  test('a bad value from the environment names the variable, not only the flag', () => {
    const e = errorOf(() => serve([], { AUTOGLM_MAX_CHOICES: '-1' }));
    expect(e.message).toMatch(/^AUTOGLM_MAX_CHOICES \(--max-choices\) must be an integer >= 1, got '-1'/);
    // the flag wins, so an error about it names the flag
    expect(errorOf(() => serve(['--max-choices', 'x'], { AUTOGLM_MAX_CHOICES: '4' })).message).toMatch(/^--max-choices must/);
  });
});

describe('values that were silently dropped or misread', () => {
  test('a boolean variable that is not a yes or a no is refused (AUTOGLM_NO_AUTH=ture read as false)', () => {
    expect(errorOf(() => serve([], { AUTOGLM_NO_AUTH: 'ture' })).message).toContain('AUTOGLM_NO_AUTH (--no-auth) must be one of 1, true');
    expect(errorOf(() => gateway([], { AUTOGLM_NO_RESUME: 'enable' })).param).toBe('no-resume');
    const off = serve([], { AUTOGLM_NO_AUTH: 'off', AUTOGLM_FORCE_F32: 'Yes' });
    expect(off === 'help' ? null : [off.authDisabled, off.engine.forceF32]).toEqual([false, true]);
  });

  test('a flag given twice is refused (--api-keys a --api-keys b kept only b)', () => {
    expect(errorOf(() => serve(['--api-keys', 'sk-a', '--api-keys', 'sk-b'])).message).toContain('--api-keys was given more than once');
    expect(errorOf(() => gateway(['--port=1', '--port', '2'])).param).toBe('port');
  });

  test('an explicit empty value is refused (--model "" served the bundled demo model); an empty variable is unset', () => {
    expect(errorOf(() => serve(['--model', ''])).message).toContain('--model needs a value');
    expect(errorOf(() => serve(['--host='])).param).toBe('host');
    const c = serve([], { AUTOGLM_MODEL: '' });
    expect(c === 'help' ? null : c.usingDefaultModel).toBe(true);
  });

  test('--no-auth with API keys contradicts itself: the keys were ignored and the server ran open', () => {
    const keys = join(dir, 'keys');
    writeFileSync(keys, 'sk-file\n');
    expect(errorOf(() => serve(['--no-auth', '--api-keys', 'sk-a'])).message).toContain('--no-auth and --api-keys contradict');
    expect(errorOf(() => serve(['--no-auth'], { AUTOGLM_API_KEY_FILE: keys })).message).toContain('AUTOGLM_API_KEY_FILE (--api-key-file)');
    expect(errorOf(() => gateway(['--api-keys', 'sk-a'], { AUTOGLM_NO_AUTH: '1' })).param).toBe('no-auth');
  });

  test('a flag its mode does not read is refused instead of ignored', () => {
    expect(errorOf(() => serve(['--rate-limit-burst', '5'])).param).toBe('rate-limit-burst');
    expect(errorOf(() => gateway(['--workers', 'http://a:1'])).message).toContain('--workers is read only with --registry static');
    expect(errorOf(() => gateway(['--registry', 'static', '--workers', 'http://a:1', '--dns-name', 'x'])).param).toBe('dns-name');
    expect(errorOf(() => gateway(['--affinity-max-imbalance', '2'])).param).toBe('affinity-max-imbalance');
    expect(errorOf(() => gateway(['--rate-limit-burst', '3'])).param).toBe('rate-limit-burst');
  });

  test('gateway --log-level and --dns-servers are checked when parsed, not inside pino or the resolver', () => {
    expect(errorOf(() => gateway(['--log-level', 'verbose'])).param).toBe('log-level');
    const e = errorOf(() => gateway(['--registry', 'dns', '--dns-name', 'w', '--dns-servers', 'resolver.local']));
    expect([e.param, e.message.startsWith('--dns-servers takes ip or ip:port')]).toEqual(['dns-servers', true]);
    const ok = gateway(['--registry', 'dns', '--dns-name', 'w', '--dns-servers', '10.0.0.2,10.0.0.3:5353']);
    expect(ok === 'help' ? null : ok.registryKind).toBe('dns');
  });
});

describe('autoglm bench arguments', () => {
  const bench = async (argv: string[]): Promise<Error & { param?: string }> => {
    try {
      await runBench(argv);
    } catch (e) {
      expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
      return e as Error & { param?: string };
    }
    throw new Error('expected an invalid_request error');
  };
  const url = 'http://127.0.0.1:1';

  test.each([
    [['serve', '--url', 'zz'], 'url'],
    [['serve', '--url', 'ftp://127.0.0.1:1'], 'url'],
    [['serve', '--url', url, '--temperature', 'hot'], 'temperature'],
    [['serve', '--url', url, '--seed', 'abc'], 'seed'],
    [['serve', '--url', url, '--warmup=-1'], 'warmup'],
    [['serve', '--url', url, '--num-requests', 'Infinity'], 'num-requests'],
    [['serve', '--url', url, '--num-requests', '2.5'], 'num-requests'],
    [['serve', '--url', url, '--max-concurrency', '1.5'], 'max-concurrency'],
    [['serve', '--url', url, '--timeout-ms', '1e12'], 'timeout-ms'],
    [['serve', '--url', url, '--out', 'package.json'], 'out'],
    [['sizing', '--shape', 'tiny', '--static-only', '--batches', '1.5'], 'batches'],
    [['sizing', '--shape', 'tiny', '--static-only', '--repeats', '2.5'], 'repeats'],
    [['sizing', '--shape', 'tiny', '--static-only', '--memory-utilization', '5'], 'memory-utilization'],
    [['sizing', '--model', '/nonexistent/model', '--static-only'], 'model'],
    [['compare', '--model', 'models/demo-stories', '--llama-gpu', 'quantum'], 'llama-gpu'],
  ])('%j is refused before any work, naming the flag', async (argv, param) => {
    const e = await bench(argv);
    expect(e.param).toBe(param);
    expect(e.message).toContain(`--${param} must be`);
  });

  test('sizing --no-report prints only: it wrote JSON and Markdown to --out all the same', async () => {
    const out = join(dir, 'sizing-out');
    const chunks: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => chunks.push(String(chunk)) > 0) as typeof process.stdout.write;
    try {
      await runBench(['sizing', '--shape', 'tiny', '--static-only', '--no-report', '--out', out]);
    } finally {
      process.stdout.write = write;
    }
    expect(chunks.join('')).toContain('max-sequences');
    expect(chunks.join('')).not.toContain('wrote');
    expect(spawnSync('ls', [out]).status).not.toBe(0); // --out was never created
  });

  test('bench --help lists every flag the subcommands read', async () => {
    const chunks: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => chunks.push(String(chunk)) > 0) as typeof process.stdout.write;
    try {
      await runBench(['--help']);
    } finally {
      process.stdout.write = write;
    }
    for (const flag of ['--sizing-contexts', '--temperature', '--timeout-ms', '--no-ignore-eos', '--llama-gpu auto|cpu|cuda|vulkan|metal'])
      expect(chunks.join('')).toContain(flag);
  });
});
