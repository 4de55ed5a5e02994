/**
 * Cluster benchmark: (1) gateway overhead: the same closed-loop streaming load straight to
 * one worker and through a gateway in front of it (concurrency 8), compared on throughput
 * and TTFT; (2) recovery: 3 workers behind a gateway under load, one SIGKILLed mid-stream:
 * failed requests, time until it is out of rotation, and time from the kill until the last
 * request that was in flight at that moment is answered. A benchmark, not a test.
 *
 * Run: npm run bench:cluster [-- --model DIR --concurrency 8 --requests 32 --max-tokens 8]
 * Workers and the gateway are real processes (`autoglm serve`, `autoglm gateway`) on loopback.
 * Writes bench/results/cluster.json and the "Cluster" section of bench/RESULTS.md.
 */
import { execSync } from 'node:child_process';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, spawnWorker, waitFor, waitReady, DEMO_MODEL_DIR, ROOT, type WorkerProcess } from '../test/cluster/support/processes.js';
import { formatTable, markdownTable, median, updateResultsSection, writeResultsJson } from './report.js';

const SECRET = 'bench-cluster-secret';
/** Every request must run on the GPU: no response cache, and no seed used twice. */
const NO_CACHE = ['--response-cache-entries', '0'];
let nextSeed = 1;

interface LoadResult {
  requests: number;
  failures: number;
  wallS: number;
  requestsPerS: number;
  tokensPerS: number;
  ttftP50Ms: number;
  ttftP90Ms: number;
}

/** One streamed completion; resolves with TTFT and token count (or a failure). */
async function streamOnce(
  url: string,
  body: object,
  headers: Record<string, string>,
): Promise<{ ok: boolean; ttftMs: number; tokens: number; endMs: number }> {
  const start = performance.now();
  let ttftMs = NaN;
  let tokens = 0;
  let done = false;
  try {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    if (r.status !== 200) return { ok: false, ttftMs, tokens, endMs: performance.now() };
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const data = buf.slice(0, cut).replace(/^data: /, '');
        buf = buf.slice(cut + 2);
        if (data === '[DONE]') done = true;
        else {
          const j = JSON.parse(data) as { error?: unknown; usage?: { completion_tokens: number } | null; choices: unknown[] };
          if (j.error) return { ok: false, ttftMs, tokens, endMs: performance.now() };
          if (j.choices.length > 0 && Number.isNaN(ttftMs)) ttftMs = performance.now() - start;
          if (j.usage) tokens = j.usage.completion_tokens;
        }
      }
    }
  } catch {
    return { ok: false, ttftMs, tokens, endMs: performance.now() };
  }
  return { ok: done, ttftMs, tokens, endMs: performance.now() };
}

async function closedLoop(options: {
  url: string;
  headers: Record<string, string>;
  concurrency: number;
  requests?: number;
  durationMs?: number;
  maxTokens: number;
  onStart?: (id: number) => void;
  onEnd?: (id: number, r: { ok: boolean; endMs: number }) => void;
}): Promise<LoadResult> {
  const ttfts: number[] = [];
  let issued = 0;
  let failures = 0;
  let tokens = 0;
  const start = performance.now();
  const more = (): boolean =>
    options.requests !== undefined ? issued < options.requests : performance.now() - start < (options.durationMs ?? 10_000);
  const lane = async (): Promise<void> => {
    while (more()) {
      const id = issued++;
      options.onStart?.(id);
      const body = {
        model: 'demo-stories',
        prompt: 'Once upon a time, there was a little cat named Tom. One day, Tom',
        max_tokens: options.maxTokens,
        ignore_eos: true,
        temperature: 0.8,
        seed: nextSeed++,
        stream: true,
        stream_options: { include_usage: true },
      };
      const r = await streamOnce(options.url, body, options.headers);
      options.onEnd?.(id, r);
      if (!r.ok) failures++;
      else {
        ttfts.push(r.ttftMs);
        tokens += r.tokens;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, lane));
  const wallS = (performance.now() - start) / 1000;
  const sorted = [...ttfts].sort((a, b) => a - b);
  return {
    requests: issued,
    failures,
    wallS,
    requestsPerS: (issued - failures) / wallS,
    tokensPerS: tokens / wallS,
    ttftP50Ms: median(ttfts),
    ttftP90Ms: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9))] ?? NaN,
  };
}

function startGateway(port: number, extra: string[]): ChildProcess {
  return spawn(
    process.execPath,
    ['dist/src/cli/main.js', 'gateway', '--port', String(port), '--no-auth', '--cluster-secret', SECRET, '--log-level', 'silent', ...extra],
    { cwd: ROOT, stdio: 'ignore' },
  );
}

async function healthyWorkers(gatewayUrl: string): Promise<{ url: string; state: string }[]> {
  try {
    const r = await fetch(`${gatewayUrl}/cluster/workers`, { signal: AbortSignal.timeout(1000) });
    return ((await r.json()) as { workers: { url: string; state: string }[] }).workers;
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: DEMO_MODEL_DIR },
      concurrency: { type: 'string', default: '8' },
      requests: { type: 'string', default: '32' },
      'max-tokens': { type: 'string', default: '8' },
      'recovery-seconds': { type: 'string', default: '12' },
    },
  });
  const concurrency = Number(values.concurrency);
  const requests = Number(values.requests);
  const maxTokens = Number(values['max-tokens']);
  const children: { kill(s: NodeJS.Signals): void }[] = [];
  const cleanup = (): void => children.forEach((c) => c.kill('SIGKILL'));
  process.once('exit', cleanup);

  // 1. Overhead: one worker, direct vs through a gateway, alternating rounds.
  const w = spawnWorker({ kind: 'real', modelDir: values.model!, port: await freePort(), clusterSecret: SECRET, extraArgs: NO_CACHE });
  children.push(w);
  await waitReady(w, 180_000);
  const gPort = await freePort();
  const g = startGateway(gPort, ['--registry', 'static', '--workers', w.url]);
  children.push(g);
  const gUrl = `http://127.0.0.1:${gPort}`;
  await waitFor(async () => (await healthyWorkers(gUrl)).some((x) => x.state === 'healthy'), 20_000, 'gateway sees the worker');
  const direct = { 'x-autoglm-cluster-secret': SECRET };
  process.stderr.write('warm-up\n');
  await closedLoop({ url: w.url, headers: direct, concurrency, requests: concurrency, maxTokens });
  const rounds: { mode: 'direct' | 'gateway'; r: LoadResult }[] = [];
  for (let round = 0; round < 2; round++) {
    for (const mode of ['direct', 'gateway'] as const) {
      process.stderr.write(`round ${round + 1} ${mode}\n`);
      const r = await closedLoop({
        url: mode === 'direct' ? w.url : gUrl,
        headers: mode === 'direct' ? direct : {},
        concurrency,
        requests,
        maxTokens,
      });
      rounds.push({ mode, r });
    }
  }
  g.kill('SIGTERM');
  w.kill('SIGKILL');
  await w.exited;
  const agg = (mode: 'direct' | 'gateway') => {
    const rs = rounds.filter((x) => x.mode === mode).map((x) => x.r);
    return {
      requestsPerS: median(rs.map((r) => r.requestsPerS)),
      tokensPerS: median(rs.map((r) => r.tokensPerS)),
      ttftP50Ms: median(rs.map((r) => r.ttftP50Ms)),
      ttftP90Ms: median(rs.map((r) => r.ttftP90Ms)),
      failures: rs.reduce((s, r) => s + r.failures, 0),
    };
  };
  const d = agg('direct');
  const gw = agg('gateway');

  // 2. Recovery: 3 workers, heartbeat registry, SIGKILL one under load.
  const rPort = await freePort();
  const rUrl = `http://127.0.0.1:${rPort}`;
  const rg = startGateway(rPort, []);
  children.push(rg);
  await waitFor(async () => await httpOk(`${rUrl}/health`), 20_000, 'recovery gateway');
  const workers: WorkerProcess[] = [];
  for (let i = 0; i < 3; i++) {
    const x = spawnWorker({
      kind: 'real',
      modelDir: values.model!,
      port: await freePort(),
      clusterSecret: SECRET,
      register: rUrl,
      extraArgs: NO_CACHE,
    });
    workers.push(x);
    children.push(x);
  }
  await Promise.all(workers.map((x) => waitReady(x, 180_000)));
  await waitFor(async () => (await healthyWorkers(rUrl)).filter((x) => x.state === 'healthy').length === 3, 20_000, '3 healthy');
  const inFlight = new Map<number, number>();
  const ends = new Map<number, { ok: boolean; endMs: number }>();
  let killAtMs = 0;
  let victim: WorkerProcess | null = null;
  let outMs = NaN;
  const killer = (async () => {
    await new Promise((r) => setTimeout(r, 3000));
    victim = workers[0]!;
    killAtMs = performance.now();
    victim.kill('SIGKILL');
    const atKill = [...inFlight.keys()];
    outMs = await waitFor(
      async () => !(await healthyWorkers(rUrl)).some((x) => x.url === victim!.url && x.state === 'healthy'),
      10_000,
      'out of rotation',
    );
    return atKill;
  })();
  const load = await closedLoop({
    url: rUrl,
    headers: {},
    concurrency: Math.min(concurrency, 6),
    durationMs: Number(values['recovery-seconds']) * 1000,
    maxTokens,
    onStart: (id) => inFlight.set(id, performance.now()),
    onEnd: (id, r) => {
      inFlight.delete(id);
      ends.set(id, r);
    },
  });
  const atKill = await killer;
  const lastAnsweredMs = Math.max(...atKill.map((id) => ends.get(id)?.endMs ?? NaN)) - killAtMs;
  const metrics = await (await fetch(`${rUrl}/metrics`)).text();
  const sum = (prefix: string): number =>
    metrics
      .split('\n')
      .filter((l) => l.startsWith(prefix))
      .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  const recovery = {
    requests: load.requests,
    failures: load.failures,
    inFlightAtKill: atKill.length,
    outOfRotationMs: outMs,
    killToLastInFlightAnsweredMs: lastAnsweredMs,
    retries: sum('autoglm:gateway_retries_total'),
    resumedStreams: sum('autoglm:gateway_failovers_total{outcome="resumed"}'),
  };
  cleanup();

  const overheadRows = [
    ['direct to worker', d.requestsPerS, d.tokensPerS, d.ttftP50Ms, d.ttftP90Ms, String(d.failures)],
    ['through gateway', gw.requestsPerS, gw.tokensPerS, gw.ttftP50Ms, gw.ttftP90Ms, String(gw.failures)],
  ];
  const headers = ['path', 'req/s', 'output tok/s', 'TTFT p50 ms', 'TTFT p90 ms', 'failed'];
  const ttftAdded = (gw.ttftP50Ms / d.ttftP50Ms - 1) * 100;
  const throughput = (gw.tokensPerS / d.tokensPerS) * 100;
  process.stdout.write(
    `\n${formatTable(headers, overheadRows)}\n\nTTFT p50 added by the gateway: ${ttftAdded.toFixed(1)}%; throughput ${throughput.toFixed(0)}% of direct\n`,
  );
  process.stdout.write(`recovery: ${JSON.stringify(recovery)}\n`);
  const commit = (() => {
    try {
      return execSync('git rev-parse --short HEAD', { cwd: ROOT, encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  })();
  const date = new Date().toISOString().slice(0, 10);
  writeResultsJson('cluster', {
    date,
    commit,
    model: values.model,
    concurrency,
    requests,
    maxTokens,
    direct: d,
    gateway: gw,
    ttftAddedPct: ttftAdded,
    throughputPct: throughput,
    recovery,
  });
  updateResultsSection(
    'cluster',
    [
      '## Cluster',
      '',
      `Model \`${values.model!.split('/').pop()}\`, workers and gateway as separate processes on loopback (\`autoglm serve\` on the machine's WebGPU adapter, ${cpus().length} CPU cores shared by all of them); ` +
        `date ${date}, commit ${commit}; streaming /v1/completions, ${maxTokens} output tokens (ignore_eos, seeded sampling), closed loop. \`npm run bench:cluster\`.`,
      '',
      `### Gateway overhead (one worker, concurrency ${concurrency}, ${requests} requests per round, median of 2 alternating rounds)`,
      '',
      markdownTable(headers, overheadRows),
      '',
      `TTFT p50 added by the gateway: **${ttftAdded.toFixed(1)}%** (target <= 5%); throughput through the gateway: **${throughput.toFixed(0)}%** of direct. ` +
        'Where the adapter is lavapipe, the "GPU" is the same CPU cores the gateway and the load generator run on, so gateway CPU time is taken straight from the worker; on a real GPU host the gateway runs beside an idle CPU.',
      '',
      `### Recovery after SIGKILL (3 workers, heartbeat registry, default health settings, ${Number(values['recovery-seconds'])} s of load at concurrency ${Math.min(concurrency, 6)})`,
      '',
      markdownTable(
        [
          'requests',
          'failed',
          'in flight at kill',
          'retries',
          'resumed streams',
          'out of rotation ms',
          'kill -> last in-flight answered ms',
        ],
        [
          [
            recovery.requests,
            recovery.failures,
            recovery.inFlightAtKill,
            recovery.retries,
            recovery.resumedStreams,
            recovery.outOfRotationMs,
            recovery.killToLastInFlightAnsweredMs,
          ],
        ],
      ),
      '',
      'Targets: zero failed requests across a kill; the dead worker out of rotation in <= 1 s with default settings.',
    ].join('\n'),
  );
  process.exit(0);
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await r.body?.cancel();
    return r.ok;
  } catch {
    return false;
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:cluster failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
