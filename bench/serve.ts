/**
 * Serving benchmark: a closed-loop load generator (fetch, streaming completions) against
 * the OpenAI-compatible server at several concurrencies, and the same load run straight
 * on the in-process engine, so the server's overhead is the ratio of the two.
 * Reports requests/s, output tokens/s, TTFT and TPOT percentiles. A benchmark, not a test.
 * The engine is warmed up as `autoglm serve` does before /ready (every decode batch width
 * compiled), and each level runs in rounds whose mode order alternates, reporting the
 * round with the median throughput of each mode and the median of the per-round ratios: on
 * a shared 2-core machine a single pair swung 64-107% from one minute to the next.
 *
 * Run: npm run bench:serve [-- --model DIR --concurrency 1,8,32 --requests 16 --rounds 3 --max-tokens 8 --url URL]
 * Writes bench/results/serve.json and the "Serving" section of bench/RESULTS.md.
 * Without --url, the server is started in this process on a loopback port around the
 * same engine (as `autoglm serve` runs it); with --url, an external server is driven and
 * the in-process comparison still uses a locally loaded engine.
 */
import { parseArgs } from 'node:util';
import { Engine } from '../src/engine/engine.js';
import { buildServer } from '../src/server/index.js';
import { loadBenchEngine } from './engine-load.js';
import { median, repoRoot, updateResultsSection, writeResultsJson } from './report.js';

interface LevelResult {
  mode: 'http' | 'in-process';
  concurrency: number;
  requests: number;
  wallS: number;
  requestsPerS: number;
  outputTokensPerS: number;
  ttftMs: Percentiles;
  tpotMs: Percentiles;
}

interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
}

/** One measured request: when its first token came and how many tokens it produced. */
interface Sample {
  ttftMs: number;
  tpotMs: number | null;
  outputTokens: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      url: { type: 'string' },
      'api-key': { type: 'string' },
      concurrency: { type: 'string', default: '1,8,32' },
      requests: { type: 'string' },
      rounds: { type: 'string', default: '3' },
      'max-tokens': { type: 'string', default: '8' },
      prompt: { type: 'string', default: 'Once upon a time, there was a little cat named Tom. One day, Tom' },
    },
  });
  const levels = values.concurrency!.split(',').map(Number);
  const maxTokens = Number(values['max-tokens']);
  // Default: the generated ~100M Llama shared with the engine benchmarks (response cache off,
  // so every request runs on the GPU); --model serves any folder instead.
  const { engine, dir: modelDir } = values.model
    ? { engine: await Engine.load(values.model, { responseCacheEntries: 0 }), dir: values.model }
    : await loadBenchEngine();
  const server = values.url ? null : buildServer({ engine, auth: { apiKeys: [], disabled: true }, logger: false });
  const baseUrl = values.url ?? (await server!.listen({ port: 0, host: '127.0.0.1' }));
  const prompt = values.prompt!;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (values['api-key']) headers.authorization = `Bearer ${values['api-key']}`;

  // Warm-up as the server's before /ready: every pipeline compiled before anything is timed
  // (a single request compiled only batch width 1, and the first level paid the rest).
  await engine.warmUp();

  const rounds = Number(values.rounds);
  const results: LevelResult[] = [];
  const ratios: { concurrency: number; httpVsInProcess: number; perRound: number[] }[] = [];
  for (const concurrency of levels) {
    const perMode: Record<LevelResult['mode'], LevelResult[]> = { 'in-process': [], http: [] };
    for (let round = 0; round < rounds; round++) {
      const order: LevelResult['mode'][] = round % 2 === 0 ? ['in-process', 'http'] : ['http', 'in-process'];
      for (const mode of order) perMode[mode].push(await runMode(mode, concurrency, round));
    }
    const perRound = perMode.http.map((h, i) => h.outputTokensPerS / perMode['in-process'][i]!.outputTokensPerS);
    results.push(medianRound(perMode['in-process']), medianRound(perMode.http));
    ratios.push({ concurrency, httpVsInProcess: median(perRound), perRound });
  }

  async function runMode(mode: LevelResult['mode'], concurrency: number, round: number): Promise<LevelResult> {
    const requests = values.requests ? Number(values.requests) : Math.max(8, concurrency * 2);
    // Different seeds per request so the response cache cannot answer (sampling, not greedy).
    const make = (i: number) => ({ seed: 1000 + i, temperature: 0.8 });
    // A distinct prompt per (mode, level, round, request), same length: no run may reuse
    // another's KV through the prefix cache (block hashes chain from the first block).
    const promptFor = (tag: string, i: number): string =>
      `${tag}${String(concurrency).padStart(2, '0')}${round}${String(i).padStart(3, '0')} ${prompt}`;
    if (mode === 'in-process') {
      const inProc = await runLevel(concurrency, requests, async (i) => {
        const start = performance.now();
        let first = 0;
        let last = 0;
        let n = 0;
        for await (const _ of engine.generate({ prompt: promptFor('P', i), maxTokens, ignoreEos: true, sampling: make(i) })) {
          last = performance.now();
          if (n++ === 0) first = last;
        }
        return { ttftMs: first - start, tpotMs: n > 1 ? (last - first) / (n - 1) : null, outputTokens: n };
      });
      return { mode, concurrency, ...inProc };
    }
    const http = await runLevel(concurrency, requests, async (i) => {
      const start = performance.now();
      const r = await fetch(`${baseUrl}/v1/completions`, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          model: engine.modelName,
          prompt: promptFor('H', i),
          max_tokens: maxTokens,
          ignore_eos: true,
          stream: true,
          return_token_ids: true,
          seed: make(i).seed,
          temperature: make(i).temperature,
        }),
      });
      if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
      let first = 0;
      let last = 0;
      let n = 0;
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(chunk, { stream: true });
        let cut: number;
        while ((cut = buffered.indexOf('\n\n')) >= 0) {
          const data = buffered.slice(6, cut);
          buffered = buffered.slice(cut + 2);
          if (data === '[DONE]') continue;
          const ids = (JSON.parse(data) as { choices: { token_ids?: number[] }[] }).choices[0]?.token_ids ?? [];
          if (ids.length === 0) continue;
          last = performance.now();
          if (n === 0) first = last;
          n += ids.length;
        }
      }
      return { ttftMs: first - start, tpotMs: n > 1 ? (last - first) / (n - 1) : null, outputTokens: n };
    });
    return { mode, concurrency, ...http };
  }
  await server?.close();
  const adapter = engine.stats().adapterName;
  await engine.close();

  const table = renderTable(results, ratios);
  process.stdout.write(`\nmodel ${modelDir} on ${adapter}, ${maxTokens} output tokens per request\n\n${table}\n`);
  writeResultsJson('serve', { modelDir, adapter, maxTokens, rounds, results, ratios });
  updateResultsSection(
    'serve',
    [
      '## Serving',
      '',
      `Model \`${values.model ? modelDir.replace(repoRoot() + '/', '') : 'generated ~100M Llama (100m preset)'}\` on ${adapter}; date ${new Date().toISOString().slice(0, 10)}; ${maxTokens} output tokens per request (ignore_eos, sampled with`,
      `per-request seeds, a distinct prompt per request so the prefix cache cannot favour either mode), streaming`,
      `/v1/completions through fetch, closed loop, server in the same process as in \`autoglm serve\`, warmed up as it is before /ready. \`npm run bench:serve\`.`,
      `${rounds} rounds per level, the mode order alternating; each row is its mode's median-throughput round, and "HTTP vs in-process" the median of the per-round ratios (listed).`,
      `The machine is shared (lavapipe on 2 CPU cores, other jobs running), so the numbers are noisy.`,
      '',
      table,
      '',
      `Target: HTTP >= 90% of in-process output tokens/s at concurrency 8.`,
    ].join('\n'),
  );
}

/** Runs `requests` calls of `one` with at most `concurrency` in flight (a closed loop). */
async function runLevel(
  concurrency: number,
  requests: number,
  one: (i: number) => Promise<Sample>,
): Promise<Omit<LevelResult, 'mode' | 'concurrency'>> {
  const samples: Sample[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests) samples.push(await one(next++));
    }),
  );
  const wallS = (performance.now() - start) / 1000;
  const tokens = samples.reduce((s, x) => s + x.outputTokens, 0);
  return {
    requests,
    wallS,
    requestsPerS: requests / wallS,
    outputTokensPerS: tokens / wallS,
    ttftMs: percentiles(samples.map((s) => s.ttftMs)),
    tpotMs: percentiles(samples.flatMap((s) => (s.tpotMs === null ? [] : [s.tpotMs]))),
  };
}

function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

/** The round whose output tokens/s is the median of the mode's rounds (a real round, not a blend). */
function medianRound(rounds: LevelResult[]): LevelResult {
  const sorted = [...rounds].sort((a, b) => a.outputTokensPerS - b.outputTokensPerS);
  return sorted[(sorted.length - 1) >> 1]!;
}

function renderTable(results: LevelResult[], ratios: { concurrency: number; httpVsInProcess: number; perRound: number[] }[]): string {
  const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const rows = results.map((r) => {
    const level = ratios.find((x) => x.concurrency === r.concurrency)!;
    const ratio = r.mode === 'http' ? `${f(100 * level.httpVsInProcess, 0)}% (${level.perRound.map((x) => f(100 * x, 0)).join(', ')})` : '';
    return `| ${r.concurrency} | ${r.mode} | ${r.requests} | ${f(r.requestsPerS, 2)} | ${f(r.outputTokensPerS)} | ${f(r.ttftMs.p50)} / ${f(r.ttftMs.p90)} / ${f(r.ttftMs.p99)} | ${f(r.tpotMs.p50)} / ${f(r.tpotMs.p90)} / ${f(r.tpotMs.p99)} | ${ratio} |`;
  });
  return [
    '| concurrency | mode | requests | req/s | output tok/s | TTFT ms p50 / p90 / p99 | TPOT ms p50 / p90 / p99 | HTTP vs in-process |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:serve failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
