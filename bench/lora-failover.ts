/**
 * Run-time LoRA adapters across a worker restart, behind the gateway: 2 real workers
 * (`--max-loras 2 --allow-runtime-lora-updates`) and a gateway (`--allow-runtime-lora-updates`,
 * static registry) as processes on loopback; one generated adapter loaded through the gateway;
 * a closed loop of requests on the adapter (non-streamed, greedy, a few tokens) through the
 * gateway while one worker is SIGKILLed and started again. Measured per round: the load call
 * through the gateway, failed adapter requests, the restarted worker's start-up (kill to
 * /ready), the gateway giving it the adapter back (its /ready to its /v1/models listing the
 * adapter, split at the gateway finding it healthy), and its /ready to the first adapter request the gateway sends it. A benchmark,
 * not a test.
 *
 * Run: npm run bench:lora-failover [-- --rounds 3 --concurrency 4 --max-tokens 4]
 * Writes bench/results/lora-failover.json and the "LoRA failover" section of bench/RESULTS.md.
 */
import { rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelSpec } from '../src/engine/model/config.js';
import { generateLoraAdapter } from '../src/testing/generate-lora.js';
import {
  DEMO_MODEL_DIR,
  freePort,
  spawnGateway,
  spawnWorker,
  waitFor,
  waitReady,
  type WorkerProcess,
} from '../test/cluster/support/processes.js';
import { formatTable, markdownTable, median, runStamp, updateResultsSection, writeResultsJson } from './report.js';

const SECRET = 'bench-lora-secret';
const secret = { 'x-autoglm-cluster-secret': SECRET };
const LORA_FLAGS = ['--max-loras', '2', '--allow-runtime-lora-updates'];

interface Round {
  loadMs: number;
  requests: number;
  failures: number;
  killToReadyMs: number;
  /** Its /ready to the gateway's probes finding it healthy: the passive-ejection cool-down, doubling per kill within 60 s. */
  readyToRotationMs: number;
  /** From the gateway finding it healthy to its /v1/models listing the adapter. */
  rotationToAdapterMs: number;
  readyToFirstRequestMs: number;
}

async function adaptersOf(workerUrl: string): Promise<string[]> {
  try {
    const r = await fetch(`${workerUrl}/v1/models`, { headers: secret, signal: AbortSignal.timeout(1000) });
    const body = (await r.json()) as { data: { id: string; parent?: string }[] };
    return body.data.filter((m) => m.parent !== undefined).map((m) => m.id);
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      concurrency: { type: 'string', default: '4' },
      'max-tokens': { type: 'string', default: '4' },
    },
  });
  const rounds = Number(values.rounds);
  const concurrency = Number(values.concurrency);
  const maxTokens = Number(values['max-tokens']);
  const adapterDir = join(tmpdir(), `autoglm-bench-lora-${process.pid}`);
  await generateLoraAdapter(adapterDir, await loadModelSpec(DEMO_MODEL_DIR), { rank: 8, seed: 3, bScale: 0.15 });
  const children: { kill(s: NodeJS.Signals): void }[] = [];
  process.once('exit', () => {
    children.forEach((c) => c.kill('SIGKILL'));
    rmSync(adapterDir, { recursive: true, force: true });
  });

  const ports = [await freePort(), await freePort()];
  const start = (port: number): WorkerProcess => {
    const w = spawnWorker({ kind: 'real', port, clusterSecret: SECRET, extraArgs: LORA_FLAGS });
    children.push(w);
    return w;
  };
  const workers = [start(ports[0]!)];
  await waitReady(workers[0]!);
  workers.push(start(ports[1]!));
  await waitReady(workers[1]!);
  const gPort = await freePort();
  const gateway = spawnGateway({
    port: gPort,
    clusterSecret: SECRET,
    extraArgs: ['--registry', 'static', '--workers', workers.map((w) => w.url).join(','), '--allow-runtime-lora-updates'],
  });
  children.push(gateway);
  const gUrl = `http://127.0.0.1:${gPort}`;
  await waitFor(
    async () => {
      try {
        return (await fetch(`${gUrl}/ready`)).status === 200;
      } catch {
        return false;
      }
    },
    20_000,
    'the gateway to see a worker',
  );
  const post = (path: string, body: object) =>
    fetch(`${gUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  const results: Round[] = [];
  for (let round = 0; round < rounds; round++) {
    await waitFor(
      async () => (await fetch(`${gUrl}/ready`).then((r) => r.json() as Promise<{ healthyWorkers: number }>)).healthyWorkers === 2,
      60_000,
      'both workers healthy',
    );
    const t0 = performance.now();
    const loaded = await post('/v1/load_lora_adapter', { lora_name: 'fox', lora_path: adapterDir });
    if (loaded.status !== 200) throw new Error(`load through the gateway: HTTP ${loaded.status} ${await loaded.text()}`);
    const loadMs = performance.now() - t0;

    // the closed loop on the adapter, until the restarted worker has answered one of them
    let requests = 0;
    let failures = 0;
    const failureKinds = new Map<string, number>();
    let victimReadyMs = NaN;
    let firstOnVictimMs = NaN;
    const victim = 1;
    let stop = false;
    const loop = async (): Promise<void> => {
      while (!stop) {
        const r = await post('/v1/completions', { model: 'fox', prompt: 'Once upon a time', max_tokens: maxTokens, temperature: 0 }).catch(
          () => null,
        );
        requests++;
        if (r === null || r.status !== 200) {
          failures++;
          const why = r === null ? 'no answer' : `HTTP ${r.status} ${(await r.clone().text()).slice(0, 200)}`;
          failureKinds.set(why, (failureKinds.get(why) ?? 0) + 1);
        } else if (
          r.headers.get('x-autoglm-worker') === workers[victim]!.url &&
          Number.isFinite(victimReadyMs) &&
          Number.isNaN(firstOnVictimMs)
        )
          firstOnVictimMs = performance.now();
        await r?.arrayBuffer();
      }
    };
    const loops = Array.from({ length: concurrency }, () => loop());
    await new Promise((r) => setTimeout(r, 1000));
    const killedMs = performance.now();
    workers[victim]!.kill('SIGKILL');
    await workers[victim]!.exited;
    workers[victim] = start(ports[victim]!);
    await waitReady(workers[victim]!);
    victimReadyMs = performance.now();
    const victimUrl = workers[victim]!.url;
    await waitFor(
      async () => {
        const r = await fetch(`${gUrl}/cluster/workers`).then((x) => x.json() as Promise<{ workers: { url: string; state: string }[] }>);
        return r.workers.some((w) => w.url === victimUrl && w.state === 'healthy');
      },
      120_000,
      'the gateway to find the restarted worker healthy',
    );
    const rotationMs = performance.now();
    await waitFor(async () => (await adaptersOf(victimUrl)).includes('fox'), 60_000, 'the adapter back on the restarted worker');
    const adapterMs = performance.now();
    await waitFor(() => Number.isFinite(firstOnVictimMs), 60_000, 'an adapter request on the restarted worker');
    stop = true;
    await Promise.all(loops);
    results.push({
      loadMs,
      requests,
      failures,
      killToReadyMs: victimReadyMs - killedMs,
      readyToRotationMs: rotationMs - victimReadyMs,
      rotationToAdapterMs: adapterMs - rotationMs,
      readyToFirstRequestMs: firstOnVictimMs - victimReadyMs,
    });
    process.stderr.write(`round ${round + 1}: ${JSON.stringify(results.at(-1))} ${JSON.stringify([...failureKinds])}\n`);
    const unloaded = await post('/v1/unload_lora_adapter', { lora_name: 'fox' });
    if (unloaded.status !== 200) throw new Error(`unload through the gateway: HTTP ${unloaded.status}`);
  }

  const headers = [
    'round',
    'load via gateway (ms)',
    'requests',
    'failed',
    'kill -> ready (ms)',
    'ready -> in rotation (ms)',
    'in rotation -> adapter back (ms)',
    'ready -> first adapter request (ms)',
  ];
  const rows = results.map((r, i) => [
    String(i + 1),
    r.loadMs.toFixed(0),
    String(r.requests),
    String(r.failures),
    r.killToReadyMs.toFixed(0),
    r.readyToRotationMs.toFixed(0),
    r.rotationToAdapterMs.toFixed(0),
    r.readyToFirstRequestMs.toFixed(0),
  ]);
  rows.push([
    'median',
    median(results.map((r) => r.loadMs)).toFixed(0),
    String(results.reduce((s, r) => s + r.requests, 0)),
    String(results.reduce((s, r) => s + r.failures, 0)),
    median(results.map((r) => r.killToReadyMs)).toFixed(0),
    median(results.map((r) => r.readyToRotationMs)).toFixed(0),
    median(results.map((r) => r.rotationToAdapterMs)).toFixed(0),
    median(results.map((r) => r.readyToFirstRequestMs)).toFixed(0),
  ]);
  process.stdout.write(`${formatTable(headers, rows)}\n`);
  const { commit, date } = runStamp();
  writeResultsJson('lora-failover', { date, commit, rounds: results });
  const args = process.argv.slice(2).join(' ');
  updateResultsSection(
    'lora-failover',
    `## LoRA failover\n\nModel \`demo-stories\` with one generated rank-8 adapter (all projections), 2 workers (\`--max-loras 2 --allow-runtime-lora-updates\`) and a gateway (\`--allow-runtime-lora-updates\`, static registry, default probes: 250 ms) as processes on loopback, ${cpus().length} CPU cores shared by all of them. ` +
      `Per round: the adapter loaded through the gateway, ${concurrency} clients sending greedy ${maxTokens}-token completions on it through the gateway, one worker SIGKILLed after 1 s and started again; the columns "ready ->" count from the restarted worker's /ready answering 200; "in rotation" is the gateway's probes finding it healthy, which waits out the passive-ejection cool-down its kill started (1 s, doubling for each kill within 60 s: the rounds come about 10 s apart, so later rounds wait longer, as a crash-looping worker would). Totals in the last row are sums (requests, failed) or medians. ` +
      `Date ${date}, commit ${commit}. \`npm run bench:lora-failover${args ? ` -- ${args}` : ''}\`.\n\n` +
      markdownTable(headers, rows),
  );
  process.exit(0);
}

await main();
