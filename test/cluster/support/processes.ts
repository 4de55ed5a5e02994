/**
 * Real processes for cluster tests, all on loopback: workers (the real `autoglm serve`
 * CLI, or the scripted worker when the engine is not built), etcd, dnsmasq. Every helper
 * has a bounded wait and a stop() that kills only what it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, whether this runs from test/ (vitest) or dist/test/ (bench). */
export const ROOT = ((): string => {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();
const CLI = join(ROOT, 'dist/src/cli/main.js');
const SCRIPTED = join(ROOT, 'dist/test/cluster/support/scripted-worker.js');
export const DEMO_MODEL_DIR = join(ROOT, 'models/demo-stories');

/**
 * 'real': `node dist/src/cli/main.js serve --model models/demo-stories` (needs the engine
 * built); 'scripted': the real server around a deterministic engine. AUTOGLM_CLUSTER_WORKERS
 * chooses; by default real when dist/src/engine/engine.js exists.
 */
export const WORKER_KIND: 'real' | 'scripted' =
  process.env.AUTOGLM_CLUSTER_WORKERS === 'scripted' || process.env.AUTOGLM_CLUSTER_WORKERS === 'real'
    ? process.env.AUTOGLM_CLUSTER_WORKERS
    : existsSync(join(ROOT, 'dist/src/engine/engine.js'))
      ? 'real'
      : 'scripted';

export const MODEL = 'demo-stories';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await check()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function httpStatus(url: string, timeoutMs = 1000): Promise<number> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await r.body?.cancel();
    return r.status;
  } catch {
    return 0;
  }
}

export interface WorkerProcess {
  readonly url: string;
  readonly port: number;
  readonly proc: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  output(): string;
  kill(signal: NodeJS.Signals): void;
}

export interface WorkerSpawnOptions {
  port: number;
  register?: string;
  etcd?: string;
  clusterSecret?: string;
  heartbeatMs?: number;
  /** Scripted workers only: delay per token. */
  tokenDelayMs?: number;
  drainTimeoutMs?: number;
  kind?: 'real' | 'scripted';
  /** Real workers only: model folder (default the bundled demo model). */
  modelDir?: string;
  /** Real workers only: --served-model-name (default MODEL, 'demo-stories'). */
  servedModelName?: string;
  /** More `autoglm serve` flags (real workers only). */
  extraArgs?: string[];
  /**
   * Real workers only: run with `autoglm serve`'s own defaults (KV budget, batch width,
   * response cache, tokenizer pool) instead of the small settings the tests use.
   */
  serveDefaults?: boolean;
}

/** The small worker the tests run: a few MiB of KV cache, 8 sequences, no tokenizer threads. */
const TEST_SERVE_FLAGS = [
  '--tokenizer-threads',
  '0',
  '--kv-cache-bytes',
  String(8 * 1024 * 1024),
  '--max-batch-sequences',
  '8',
  // a response replayed from the cache arrives all at once and cannot be cut
  // mid-generation, which the failover tests need to do
  '--response-cache-entries',
  '0',
];

export function spawnWorker(o: WorkerSpawnOptions): WorkerProcess {
  const kind = o.kind ?? WORKER_KIND;
  const common = [
    '--port',
    String(o.port),
    ...(o.register ? ['--register', o.register] : []),
    ...(o.etcd ? ['--etcd', o.etcd] : []),
    ...(o.clusterSecret ? ['--cluster-secret', o.clusterSecret] : []),
    ...(o.register || o.etcd ? ['--heartbeat-ms', String(o.heartbeatMs ?? 300)] : []),
    '--drain-timeout-ms',
    String(o.drainTimeoutMs ?? 15_000),
  ];
  const args =
    kind === 'real'
      ? [
          CLI,
          'serve',
          '--model',
          o.modelDir ?? DEMO_MODEL_DIR,
          '--served-model-name',
          o.servedModelName ?? MODEL,
          '--host',
          '127.0.0.1',
          '--no-auth',
          '--log-level',
          'warn',
          ...(o.serveDefaults ? [] : TEST_SERVE_FLAGS),
          ...common,
          ...(o.extraArgs ?? []),
        ]
      : [SCRIPTED, '--token-delay-ms', String(o.tokenDelayMs ?? 20), ...common];
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, AUTOGLM_API_KEYS: '' },
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  proc.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    url: `http://127.0.0.1:${o.port}`,
    port: o.port,
    proc,
    exited,
    output: () => out,
    kill: (signal) => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
  };
}

/** `autoglm gateway` as a process on loopback, without API keys, talking to workers with `clusterSecret`. */
export function spawnGateway(o: { port: number; clusterSecret: string; extraArgs: string[] }): ChildProcess {
  return spawn(
    process.execPath,
    [CLI, 'gateway', '--port', String(o.port), '--no-auth', '--cluster-secret', o.clusterSecret, '--log-level', 'silent', ...o.extraArgs],
    { cwd: ROOT, stdio: 'ignore' },
  );
}

/** Waits until the worker's /ready is 200 (model loaded). Real workers load the model first: allow time. */
export async function waitReady(w: WorkerProcess, timeoutMs = 180_000): Promise<void> {
  await waitFor(
    async () => {
      if (w.proc.exitCode !== null) throw new Error(`worker ${w.url} exited early:\n${w.output()}`);
      return (await httpStatus(`${w.url}/ready`)) === 200;
    },
    timeoutMs,
    `${w.url}/ready`,
  );
}

export async function stopAll(workers: Iterable<WorkerProcess>): Promise<void> {
  await Promise.all(
    [...workers].map(async (w) => {
      w.kill('SIGKILL');
      await w.exited;
    }),
  );
}

export interface ServiceProcess {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly proc: ChildProcess;
  stop(): Promise<void>;
}

function track(proc: ChildProcess, dir: string, port: number, url: string): ServiceProcess {
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    url,
    port,
    dir,
    proc,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const ETCD_BIN = '/usr/bin/etcd';
export const DNSMASQ_BIN = '/usr/sbin/dnsmasq';

/** A single-member etcd on loopback ports, data in a temp dir. */
export async function startEtcd(): Promise<ServiceProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'autoglm-etcd-'));
  const client = await freePort();
  const peer = await freePort();
  const proc = spawn(
    ETCD_BIN,
    [
      '--name',
      'test',
      '--data-dir',
      join(dir, 'data'),
      '--listen-client-urls',
      `http://127.0.0.1:${client}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${client}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      `test=http://127.0.0.1:${peer}`,
      '--logger',
      'zap',
      '--log-level',
      'error',
    ],
    { stdio: 'ignore' },
  );
  const svc = track(proc, dir, client, `http://127.0.0.1:${client}`);
  await waitFor(async () => (await httpStatus(`${svc.url}/health`)) === 200, 20_000, 'etcd /health');
  return svc;
}

/** dnsmasq answering only from `hostsFile` and the given extra flags, authoritative for `domain`. */
export async function startDnsmasq(options: {
  dir: string;
  hostsFile: string;
  domain: string;
  extraArgs?: string[];
}): Promise<ServiceProcess> {
  const port = await freePort();
  const proc = spawn(
    DNSMASQ_BIN,
    [
      '--keep-in-foreground',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      `--addn-hosts=${options.hostsFile}`,
      `--local=/${options.domain}/`,
      '--pid-file=',
      '--log-facility=-',
      ...(process.getuid?.() === 0 ? ['--user=root', '--group=root'] : []),
      ...(options.extraArgs ?? []),
    ],
    { stdio: 'ignore' },
  );
  const svc = track(proc, options.dir, port, `127.0.0.1:${port}`);
  await waitFor(() => proc.exitCode === null, 100, 'dnsmasq');
  await new Promise((r) => setTimeout(r, 200));
  if (proc.exitCode !== null) throw new Error(`dnsmasq exited with ${proc.exitCode}`);
  return svc;
}
