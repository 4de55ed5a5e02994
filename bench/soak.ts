/**
 * `npm run bench:soak`: memory and correctness under sustained mixed load. A worker
 * (`autoglm serve` with its own defaults) and a gateway in front of it run as processes on
 * loopback; a closed loop at `--concurrency` sends requests for `--seconds`, alternating
 * between the worker and the gateway and mixing what clients do: streamed and whole
 * completions and chats, greedy and sampled, seeded streams the client abandons after a
 * few tokens, invalid requests (400), logprobs with stop strings. Every `--sample-seconds`
 * it records both processes' RSS (/proc) and the lowest JS heap the worker's /metrics
 * showed in that window (polled every 3 s: the minimum tracks what survives collection).
 * At the end, once idle, the worker must hold no KV blocks and no request.
 *
 * What it reports: any request that failed (anything but 200, the expected 400s and the
 * client's own aborts), the growth of each process's RSS over the second half of the run
 * per 10,000 requests (the first half includes warm-up: compiles, pools, caches filling),
 * and the worker's state at the end. A leak shows as a steady slope; a plateau as ~0.
 * Writes bench/results/soak.json and the "soak" section of bench/RESULTS.md.
 *
 * Run: npm run bench:soak [-- --seconds 300 --concurrency 8 --sample-seconds 30 --model DIR]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEMO_MODEL_DIR, MODEL, freePort, spawnGateway, spawnWorker, waitFor, waitReady } from '../test/cluster/support/processes.js';
import { markdownTable, runStamp, updateResultsSection, writeResultsJson } from './report.js';

const SECRET = 'bench-soak-secret';

/** One kind of client request: its route, body, and whether the client gives up early. */
interface RequestKind {
  name: string;
  path: '/v1/completions' | '/v1/chat/completions';
  body: (i: number) => Record<string, unknown>;
  /** The client aborts this long after sending (a reader that goes away mid-stream). */
  abortAfterMs?: number;
  /** The status a correct server answers. */
  expect: 200 | 400;
}

const prompt = (i: number): string => `Story ${i % 97}: Once upon a time`;

const KINDS: RequestKind[] = [
  {
    name: 'stream sampled',
    path: '/v1/completions',
    expect: 200,
    body: (i) => ({ prompt: prompt(i), stream: true, max_tokens: 16, temperature: 0.8 }),
  },
  { name: 'whole greedy', path: '/v1/completions', expect: 200, body: (i) => ({ prompt: prompt(i), max_tokens: 12, temperature: 0 }) },
  {
    name: 'stream seeded, abandoned',
    path: '/v1/completions',
    expect: 200,
    abortAfterMs: 50,
    body: (i) => ({ prompt: prompt(i), stream: true, max_tokens: 24, temperature: 0.7, seed: i }),
  },
  {
    name: 'invalid (temperature 2.5)',
    path: '/v1/completions',
    expect: 400,
    body: (i) => ({ prompt: prompt(i), max_tokens: 8, temperature: 2.5 }),
  },
  {
    name: 'stream logprobs + stop',
    path: '/v1/completions',
    expect: 200,
    body: (i) => ({ prompt: prompt(i), stream: true, max_tokens: 8, temperature: 0.9, logprobs: 3, stop: ['the'] }),
  },
  {
    name: 'chat stream with usage',
    path: '/v1/chat/completions',
    expect: 200,
    body: (i) => ({
      messages: [{ role: 'user', content: `Tell me story number ${i % 89}.` }],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 12,
      temperature: 0.6,
    }),
  },
];

interface Sample {
  seconds: number;
  requests: number;
  workerRssMb: number;
  gatewayRssMb: number;
  /** Lowest worker JS heap seen in the window, MB (NaN if /metrics never answered). */
  workerHeapMinMb: number;
}

function rssMb(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
  } catch {
    return NaN;
  }
}

/** One Prometheus sample by exact metric name (the first series), NaN if absent. */
function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

/** Least-squares slope of y over x. */
function slope(points: readonly [number, number][]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  const sxy = points.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0);
  const sxx = points.reduce((s, p) => s + (p[0] - mx) ** 2, 0);
  return sxx > 0 ? sxy / sxx : NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '300' },
      concurrency: { type: 'string', default: '8' },
      'sample-seconds': { type: 'string', default: '30' },
      model: { type: 'string', default: DEMO_MODEL_DIR },
    },
  });
  const durationMs = Number(values.seconds) * 1000;
  const concurrency = Number(values.concurrency);
  const sampleMs = Number(values['sample-seconds']) * 1000;
  if (!(durationMs > 0 && concurrency >= 1 && sampleMs > 0 && sampleMs * 4 <= durationMs)) {
    throw new Error('--seconds, --concurrency and --sample-seconds must be positive, with at least 4 samples in the run');
  }

  const worker = spawnWorker({ kind: 'real', modelDir: values.model!, port: await freePort(), clusterSecret: SECRET, serveDefaults: true });
  const gatewayPort = await freePort();
  const gateway = spawnGateway({ port: gatewayPort, clusterSecret: SECRET, extraArgs: ['--registry', 'static', '--workers', worker.url] });
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const secretHeader = { 'x-autoglm-cluster-secret': SECRET };
  try {
    await waitReady(worker);
    await waitFor(async () => (await fetch(`${gatewayUrl}/ready`).catch(() => null))?.status === 200, 30_000, 'the gateway /ready');

    const counts = { requests: 0, ok: 0, rejected: 0, aborted: 0 };
    const failures: string[] = [];
    const send = async (i: number): Promise<void> => {
      const kind = KINDS[i % KINDS.length]!;
      const viaGateway = Math.floor(i / KINDS.length) % 2 === 1;
      const ac = new AbortController();
      const timer = kind.abortAfterMs ? setTimeout(() => ac.abort(), kind.abortAfterMs) : undefined;
      try {
        const r = await fetch(`${viaGateway ? gatewayUrl : worker.url}${kind.path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(viaGateway ? {} : secretHeader) },
          body: JSON.stringify({ model: MODEL, ...kind.body(i) }),
          signal: ac.signal,
        });
        const text = await r.text();
        if (r.status !== kind.expect)
          failures.push(`${kind.name} via ${viaGateway ? 'gateway' : 'worker'}: ${r.status} ${text.slice(0, 200)}`);
        else if (r.status === 200) counts.ok++;
        else counts.rejected++;
      } catch (e) {
        if (ac.signal.aborted) counts.aborted++;
        else failures.push(`${kind.name} via ${viaGateway ? 'gateway' : 'worker'}: ${String(e)}`);
      } finally {
        clearTimeout(timer);
        counts.requests++;
      }
    };

    const heapsMb: number[] = [];
    const pollHeap = setInterval(() => {
      fetch(`${worker.url}/metrics`, { headers: secretHeader })
        .then(async (r) => heapsMb.push(metric(await r.text(), 'nodejs_heap_size_used_bytes') / 2 ** 20))
        .catch(() => undefined);
    }, 3000);
    const t0 = performance.now();
    const samples: Sample[] = [];
    const takeSample = (): void => {
      const window = heapsMb.splice(0).filter(Number.isFinite);
      samples.push({
        seconds: (performance.now() - t0) / 1000,
        requests: counts.requests,
        workerRssMb: rssMb(worker.proc.pid),
        gatewayRssMb: rssMb(gateway.pid),
        workerHeapMinMb: window.length ? Math.min(...window) : NaN,
      });
      console.error(
        `${samples.at(-1)!.seconds.toFixed(0)} s: ${counts.requests} requests, worker RSS ${samples.at(-1)!.workerRssMb.toFixed(0)} MB, gateway ${samples.at(-1)!.gatewayRssMb.toFixed(0)} MB, failures ${failures.length}`,
      );
    };
    const sampler = setInterval(takeSample, sampleMs);
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() - t0 < durationMs) await send(next++);
      }),
    );
    clearInterval(sampler);
    clearInterval(pollHeap);
    const loadSeconds = (performance.now() - t0) / 1000;

    // idle: abandoned streams are cancelled and every block goes back to the pool
    await new Promise((r) => setTimeout(r, 2000));
    const end = await (await fetch(`${worker.url}/metrics`, { headers: secretHeader })).text();
    heapsMb.push(metric(end, 'nodejs_heap_size_used_bytes') / 2 ** 20);
    takeSample();
    const endState = {
      kvCacheUsage: metric(end, 'autoglm:kv_cache_usage_perc'),
      running: metric(end, 'autoglm:num_requests_running'),
      waiting: metric(end, 'autoglm:num_requests_waiting'),
    };

    const secondHalf = samples.filter((s) => s.seconds >= loadSeconds / 2);
    const per10k = (read: (s: Sample) => number): number => slope(secondHalf.map((s) => [s.requests, read(s)])) * 10_000;
    const growth = { workerRssMbPer10k: per10k((s) => s.workerRssMb), gatewayRssMbPer10k: per10k((s) => s.gatewayRssMb) };
    const clean = failures.length === 0 && endState.kvCacheUsage === 0 && endState.running === 0 && endState.waiting === 0;

    const { commit, date } = runStamp();
    const rows = samples.map((s) => [
      s.seconds.toFixed(0),
      s.requests,
      s.workerRssMb.toFixed(0),
      Number.isFinite(s.workerHeapMinMb) ? s.workerHeapMinMb.toFixed(1) : '-',
      s.gatewayRssMb.toFixed(0),
    ]);
    const body = [
      '## Memory under sustained load',
      '',
      `Model \`${values.model === DEMO_MODEL_DIR ? MODEL : values.model}\`; a worker (\`autoglm serve\`, its default settings) and a gateway (\`autoglm gateway --registry static\`) as processes on loopback, the load alternating between them; date ${date}, commit ${commit}. Command: \`npm run bench:soak -- --seconds ${values.seconds} --concurrency ${concurrency}\`.`,
      `Mix, in turn: ${KINDS.map((k) => k.name).join('; ')}. The last row is taken 2 s after the load stopped.`,
      '',
      markdownTable(['s', 'requests', 'worker RSS MB', 'worker JS heap min MB', 'gateway RSS MB'], rows),
      '',
      `Requests: ${counts.requests} in ${loadSeconds.toFixed(0)} s (${counts.ok} answered 200, ${counts.rejected} rejected 400 as expected, ${counts.aborted} abandoned by the client), **${failures.length} failed**.`,
      `RSS growth over the second half of the run, per 10,000 requests: worker ${growth.workerRssMbPer10k.toFixed(1)} MB, gateway ${growth.gatewayRssMbPer10k.toFixed(1)} MB.`,
      `Worker once idle: KV cache ${(endState.kvCacheUsage * 100).toFixed(1)}% in use, ${endState.running} running, ${endState.waiting} waiting (${clean ? 'clean' : '**not clean**'}).`,
    ].join('\n');
    console.log(body);
    for (const f of failures.slice(0, 10)) console.error(`failed: ${f}`);
    writeResultsJson('soak', { commit, date, concurrency, loadSeconds, counts, failures, samples, growth, endState });
    updateResultsSection('soak', body);
    if (!clean) process.exitCode = 1;
  } finally {
    gateway.kill('SIGTERM');
    worker.kill('SIGTERM');
    await worker.exited;
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
