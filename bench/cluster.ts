/**
 * Cluster benchmark: (1) gateway overhead: the same closed-loop streaming load straight to
 * one worker and through a gateway in front of it (concurrency 8), compared on throughput
 * and TTFT; (2) recovery: 3 workers behind a gateway under load, one SIGKILLed mid-stream:
 * failed requests, time until it is out of rotation, and time from the kill until the last
 * request that was in flight at that moment is answered. A benchmark, not a test.
 *
 * Run: npm run bench:cluster [-- --model DIR --concurrency 8 --requests 32 --max-tokens 8 --rounds 4
 *   --c1-requests 12 --skip-recovery --bare-proxy --proxy-nice N]
 * Workers and the gateway are real processes (`autoglm serve`, `autoglm gateway`) on loopback.
 * The overhead phase alternates direct and gateway rounds (order flipped every round, so a
 * load change on a shared machine hits both) and compares each gateway round with its
 * neighbouring direct round; it also measures the CPU each process spends per request
 * (/proc on Linux) and the added TTFT at concurrency 1, where no batching hides or adds
 * anything. With --bare-proxy, further rounds pair direct with a bare node:http proxy
 * (bench/bare-proxy.ts) as a reference: what any Node proxy costs on this machine, against
 * which the gateway's own share shows. Writes bench/results/cluster.json and the "Cluster" section of bench/RESULTS.md
 * (not with --skip-recovery, which only prints).
 */
import { cpus, loadavg, setPriority } from 'node:os';
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  freePort,
  spawnGateway,
  spawnWorker,
  waitFor,
  waitReady,
  DEMO_MODEL_DIR,
  ROOT,
  type WorkerProcess,
} from '../test/cluster/support/processes.js';
import { processCpuMs } from '../src/testing/proc-cpu.js';
import { formatTable, markdownTable, median, runStamp, updateResultsSection, writeResultsJson } from './report.js';

const SECRET = 'bench-cluster-secret';
// Every request must run on the GPU: spawnWorker's test settings turn the response cache
// off (--response-cache-entries 0; a flag may be given only once), and no seed is used twice.
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

function startGateway(port: number, extraArgs: string[]): ChildProcess {
  return spawnGateway({ port, clusterSecret: SECRET, extraArgs });
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
      rounds: { type: 'string', default: '4' },
      'c1-requests': { type: 'string', default: '12' },
      'skip-recovery': { type: 'boolean', default: false },
      'bare-proxy': { type: 'boolean', default: false },
      'proxy-nice': { type: 'string', default: '0' },
    },
  });
  const roundCount = Number(values.rounds);
  const c1Requests = Number(values['c1-requests']);
  const skipRecovery = values['skip-recovery'] === true;
  const concurrency = Number(values.concurrency);
  const requests = Number(values.requests);
  const maxTokens = Number(values['max-tokens']);
  const proxyNice = Number(values['proxy-nice']);
  // checked before any process starts
  if (!Number.isInteger(proxyNice) || proxyNice < -20 || proxyNice > 19)
    throw new RangeError(`--proxy-nice must be a whole number from -20 to 19 (a nice value), got "${values['proxy-nice']}"`);
  const children: { kill(s: NodeJS.Signals): void }[] = [];
  const cleanup = (): void => children.forEach((c) => c.kill('SIGKILL'));
  process.once('exit', cleanup);

  // 1. Overhead: one worker, direct vs through a gateway, alternating rounds.
  const w = spawnWorker({ kind: 'real', modelDir: values.model!, port: await freePort(), clusterSecret: SECRET });
  children.push(w);
  await waitReady(w, 180_000);
  const gPort = await freePort();
  const g = startGateway(gPort, ['--registry', 'static', '--workers', w.url]);
  children.push(g);
  // --proxy-nice: the proxies (gateway, bare proxy) at a lower CPU priority than the worker,
  // an experiment on what the overhead is: on lavapipe the worker's "GPU" is these same cores
  if (proxyNice !== 0) setPriority(g.pid!, proxyNice);
  const gUrl = `http://127.0.0.1:${gPort}`;
  await waitFor(async () => (await healthyWorkers(gUrl)).some((x) => x.state === 'healthy'), 20_000, 'gateway sees the worker');
  const direct = { 'x-autoglm-cluster-secret': SECRET };
  process.stderr.write('warm-up\n');
  await closedLoop({ url: w.url, headers: direct, concurrency, requests: concurrency, maxTokens });
  await closedLoop({ url: gUrl, headers: {}, concurrency, requests: concurrency, maxTokens });
  let bare: ChildProcess | null = null;
  let bareUrl = '';
  if (values['bare-proxy'] === true) {
    const barePort = await freePort();
    bareUrl = `http://127.0.0.1:${barePort}`;
    bare = spawn(process.execPath, ['dist/bench/bare-proxy.js', String(barePort), w.url, SECRET], { cwd: ROOT, stdio: 'ignore' });
    children.push(bare);
    if (proxyNice !== 0) setPriority(bare.pid!, proxyNice);
    await waitFor(
      async () => (await closedLoop({ url: bareUrl, headers: {}, concurrency: 1, requests: 1, maxTokens })).failures === 0,
      20_000,
      'bare proxy',
    );
  }
  const pids = { worker: w.proc.pid, gateway: g.pid, bare: bare?.pid };
  const urls: Record<Mode, string> = { direct: w.url, gateway: gUrl, bare: bareUrl };
  const loadBefore = loadavg()[0]!;
  const runRound = async (mode: Mode, c: number, n: number): Promise<RoundResult> => {
    // the proxy column: the gateway's CPU, or the bare proxy's in its rounds
    const proxyPid = mode === 'bare' ? pids.bare : pids.gateway;
    const cpu0 = { worker: processCpuMs(pids.worker), proxy: processCpuMs(proxyPid) };
    const r = await closedLoop({
      url: urls[mode],
      headers: mode === 'direct' ? direct : {},
      concurrency: c,
      requests: n,
      maxTokens,
    });
    return {
      mode,
      r,
      workerCpuMsPerRequest: (processCpuMs(pids.worker) - cpu0.worker) / n,
      gatewayCpuMsPerRequest: (processCpuMs(proxyPid) - cpu0.proxy) / n,
    };
  };
  const rounds: RoundResult[] = [];
  const c1Rounds: RoundResult[] = [];
  for (let round = 0; round < roundCount; round++) {
    // Flip the order every round so a drift in machine load does not favour one mode.
    const order: Mode[] = round % 2 === 0 ? ['direct', 'gateway'] : ['gateway', 'direct'];
    for (const mode of order) {
      process.stderr.write(`round ${round + 1} ${mode}\n`);
      rounds.push(await runRound(mode, concurrency, requests));
    }
    if (c1Requests > 0) for (const mode of order) c1Rounds.push(await runRound(mode, 1, c1Requests));
  }
  const bareRounds: RoundResult[] = [];
  for (let round = 0; bare !== null && round < roundCount; round++) {
    const order: Mode[] = round % 2 === 0 ? ['direct', 'bare'] : ['bare', 'direct'];
    for (const mode of order) {
      process.stderr.write(`round ${round + 1} ${mode}\n`);
      bareRounds.push(await runRound(mode, concurrency, requests));
    }
  }
  const loadAfter = loadavg()[0]!;
  g.kill('SIGTERM');
  bare?.kill('SIGKILL');
  w.kill('SIGKILL');
  await w.exited;
  const d = aggregate(rounds, 'direct');
  const gw = aggregate(rounds, 'gateway');
  const ttftAdded = pairedAddedPct(rounds);
  const c1 = { direct: aggregate(c1Rounds, 'direct'), gateway: aggregate(c1Rounds, 'gateway') };
  const c1AddedMs = median(pairs(c1Rounds).map(([x, y]) => y.r.ttftP50Ms - x.r.ttftP50Ms));
  const throughput = (gw.tokensPerS / d.tokensPerS) * 100;
  const bareSummary = bare !== null ? { proxy: aggregate(bareRounds, 'bare'), direct: aggregate(bareRounds, 'direct') } : null;
  const bareAdded = bare !== null ? pairedAddedPct(bareRounds) : NaN;
  const row = (path: string, a: ReturnType<typeof aggregate>, proxyCpu: number | '-') => [
    path,
    a.requestsPerS,
    a.tokensPerS,
    a.ttftP50Ms,
    a.ttftP90Ms,
    a.workerCpuMsPerRequest,
    proxyCpu,
    String(a.failures),
  ];
  const overheadRows = [
    row('direct to worker', d, '-'),
    row('through gateway', gw, gw.gatewayCpuMsPerRequest),
    ...(bareSummary ? [row('bare node:http proxy (reference)', bareSummary.proxy, bareSummary.proxy.gatewayCpuMsPerRequest)] : []),
  ];
  const bareLine = bareSummary
    ? `A bare node:http proxy (bench/bare-proxy.ts: no framework, no parsing, no retries), paired with direct rounds the same way (${roundCount} more pairs, direct TTFT p50 ${bareSummary.direct.ttftP50Ms.toFixed(1)} ms): adds **${bareAdded.toFixed(1)}%** to TTFT p50.`
    : '';
  const headers = ['path', 'req/s', 'output tok/s', 'TTFT p50 ms', 'TTFT p90 ms', 'worker CPU ms/req', 'proxy CPU ms/req', 'failed'];
  const roundLine = rounds.map((x) => `${x.mode === 'direct' ? 'D' : 'G'} ${x.r.ttftP50Ms.toFixed(0)}`).join(', ');
  process.stdout.write(
    `\n${formatTable(headers, overheadRows)}\n\nTTFT p50 per round (D direct, G gateway): ${roundLine}\n` +
      `TTFT p50 added by the gateway: ${ttftAdded.toFixed(1)}% (median of paired rounds); throughput ${throughput.toFixed(0)}% of direct; ` +
      `concurrency 1: TTFT p50 ${c1.direct.ttftP50Ms.toFixed(1)} ms direct, ${c1.gateway.ttftP50Ms.toFixed(1)} ms via gateway (+${c1AddedMs.toFixed(1)} ms); ` +
      `load average ${loadBefore.toFixed(1)} -> ${loadAfter.toFixed(1)}\n${bareLine ? `${bareLine.replace(/\*\*/g, '')}\n` : ''}`,
  );
  if (skipRecovery) process.exit(0);

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

  process.stdout.write(`recovery: ${JSON.stringify(recovery)}\n`);
  const { commit, date } = runStamp();
  writeResultsJson('cluster', {
    date,
    commit,
    model: values.model,
    concurrency,
    requests,
    maxTokens,
    rounds: roundCount,
    direct: d,
    gateway: gw,
    ttftAddedPct: ttftAdded,
    throughputPct: throughput,
    perRound: rounds.map((x) => ({
      mode: x.mode,
      ...x.r,
      workerCpuMsPerRequest: x.workerCpuMsPerRequest,
      gatewayCpuMsPerRequest: x.gatewayCpuMsPerRequest,
    })),
    concurrency1: { requestsPerRound: c1Requests, direct: c1.direct, gateway: c1.gateway, ttftAddedMs: c1AddedMs },
    ...(bareSummary ? { bareProxy: { ...bareSummary, ttftAddedPct: bareAdded } } : {}),
    loadAverage: { before: loadBefore, after: loadAfter },
    recovery,
  });
  updateResultsSection(
    'cluster',
    [
      '## Cluster',
      '',
      `Model \`${values.model!.split('/').pop()}\`, workers and gateway as separate processes on loopback (\`autoglm serve\` on the machine's WebGPU adapter, ${cpus().length} CPU cores shared by all of them); ` +
        `date ${date}, commit ${commit}; streaming /v1/completions, ${maxTokens} output tokens (ignore_eos, seeded sampling), closed loop. \`npm run bench:cluster${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`.`,
      '',
      `### Gateway overhead (one worker, concurrency ${concurrency}, ${requests} requests per round, median of ${roundCount} rounds per mode, order flipped every round)`,
      '',
      markdownTable(headers, overheadRows),
      '',
      `TTFT p50 per round (D direct, G gateway, in run order): ${roundLine}. 1-minute load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after (other work on the machine moves these numbers).`,
      '',
      `TTFT p50 added by the gateway: **${ttftAdded.toFixed(1)}%** (median over rounds of each gateway round against its neighbouring direct round; target <= 5%); throughput through the gateway: **${throughput.toFixed(0)}%** of direct. ` +
        `At concurrency 1 (${c1Requests} requests per round, no batching effects) the gateway adds **${c1AddedMs.toFixed(1)} ms** to TTFT p50 (${c1.direct.ttftP50Ms.toFixed(1)} ms direct). ` +
        (bareLine ? `${bareLine} ` : '') +
        'CPU ms/req: user+system time of each process divided by the requests of the round (the proxy column: the gateway, including its /ready probes of the worker, or the bare proxy). ' +
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

type Mode = 'direct' | 'gateway' | 'bare';

interface RoundResult {
  mode: Mode;
  r: LoadResult;
  workerCpuMsPerRequest: number;
  gatewayCpuMsPerRequest: number;
}

function aggregate(rounds: readonly RoundResult[], mode: Mode) {
  const rs = rounds.filter((x) => x.mode === mode);
  const sum = (f: (x: RoundResult) => number): number => rs.reduce((s, x) => s + f(x), 0);
  return {
    requestsPerS: median(rs.map((x) => x.r.requestsPerS)),
    tokensPerS: median(rs.map((x) => x.r.tokensPerS)),
    ttftP50Ms: median(rs.map((x) => x.r.ttftP50Ms)),
    ttftP90Ms: median(rs.map((x) => x.r.ttftP90Ms)),
    workerCpuMsPerRequest: median(rs.map((x) => x.workerCpuMsPerRequest)),
    gatewayCpuMsPerRequest: median(rs.map((x) => x.gatewayCpuMsPerRequest)),
    failures: sum((x) => x.r.failures),
  };
}

/** (direct, proxied) rounds run back to back, in run order. */
function pairs(rounds: readonly RoundResult[]): [RoundResult, RoundResult][] {
  const out: [RoundResult, RoundResult][] = [];
  for (let i = 0; i + 1 < rounds.length; i += 2) {
    const a = rounds[i]!;
    const b = rounds[i + 1]!;
    out.push(a.mode === 'direct' ? [a, b] : [b, a]);
  }
  return out;
}

/** TTFT p50 added by the proxy (gateway or bare), in %: the median over back-to-back round pairs. */
function pairedAddedPct(rounds: readonly RoundResult[]): number {
  return median(pairs(rounds).map(([d, g]) => (g.r.ttftP50Ms / d.r.ttftP50Ms - 1) * 100));
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
