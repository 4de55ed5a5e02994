/**
 * `npm run bench:batching`: continuous batching on the ~100M generated model: 1, 4, 16 and
 * 32 concurrent requests of 128 prompt + 128 output tokens; total output tokens/s, time to
 * first token (median, p95) and time per output token. Decode is bandwidth-bound, so a
 * batch should multiply tokens per weight read (target: 16 concurrent >= 6x 1 concurrent).
 */
import { loadBenchEngine, percentile, randomPrompt, timedGenerate } from './engine-load.js';
import { formatTable, markdownTable, median, runStamp, updateResultsSection, writeResultsJson } from './report.js';

const PROMPT = Number(process.env.BENCH_PROMPT_TOKENS ?? 128);
const OUTPUT = Number(process.env.BENCH_OUTPUT_TOKENS ?? 128);
const LEVELS = (process.env.BENCH_CONCURRENCY ?? '1,4,16,32').split(',').map(Number);

async function main(): Promise<void> {
  const { engine } = await loadBenchEngine({ maxBatchSequences: Math.max(...LEVELS) });
  const vocab = 16384;
  try {
    await timedGenerate(engine, { prompt: randomPrompt(32, vocab, 1), maxTokens: 4, ignoreEos: true, sampling: { temperature: 0 } });
    const results = [];
    for (const c of LEVELS) {
      const start = performance.now();
      const runs = await Promise.all(
        Array.from({ length: c }, (_, i) =>
          timedGenerate(engine, {
            prompt: randomPrompt(PROMPT, vocab, c * 1000 + i),
            maxTokens: OUTPUT,
            ignoreEos: true,
            sampling: { temperature: 0 },
          }),
        ),
      );
      const seconds = (performance.now() - start) / 1000;
      const tokens = runs.reduce((n, r) => n + r.tokens, 0);
      const row = {
        concurrency: c,
        outputTps: tokens / seconds,
        ttftMedianMs: median(runs.map((r) => r.ttftMs)),
        ttftP95Ms: percentile(
          runs.map((r) => r.ttftMs),
          95,
        ),
        tpotMedianMs: median(runs.map((r) => r.tpotMs)),
        seconds,
      };
      results.push(row);
      console.error(`concurrency ${c}: ${row.outputTps.toFixed(1)} tok/s`);
    }
    const base = results[0]!.outputTps;
    const rows = results.map((r) => [
      r.concurrency,
      r.outputTps.toFixed(1),
      `${(r.outputTps / base).toFixed(2)}x`,
      r.ttftMedianMs.toFixed(0),
      r.ttftP95Ms.toFixed(0),
      r.tpotMedianMs.toFixed(1),
    ]);
    const headers = ['concurrent', 'output tok/s', 'vs 1', 'TTFT median ms', 'TTFT p95 ms', 'TPOT median ms'];
    console.log(formatTable(headers, rows));
    const { commit, date } = runStamp();
    writeResultsJson('batching', { adapter: engine.adapterName, date, commit, prompt: PROMPT, output: OUTPUT, results });
    updateResultsSection(
      'batching',
      `## Continuous batching\n\nAdapter: ${engine.adapterName}. Model: generated ~100M Llama, f16 weights. ${PROMPT} prompt + ${OUTPUT} output tokens per request. Date: ${date}, commit ${commit}. Command: \`npm run bench:batching\`.\n\n` +
        markdownTable(headers, rows) +
        `\n\n${targetLine(results)}`,
    );
  } finally {
    await engine.close();
  }
}

/** The target, judged on this run (16 concurrent against 1), when both were run. */
function targetLine(results: { concurrency: number; outputTps: number }[]): string {
  const one = results.find((r) => r.concurrency === 1);
  const sixteen = results.find((r) => r.concurrency === 16);
  const target = 'Target: throughput at 16 concurrent >= 6x throughput at 1';
  if (!one || !sixteen) return `${target} (not judged: this run lacks 1 or 16).`;
  const ratio = sixteen.outputTps / one.outputTps;
  return `${target}: ${ratio.toFixed(2)}x here, ${ratio >= 6 ? 'met' : '**not met**'}.`;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
