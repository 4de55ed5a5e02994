/**
 * `npm run bench:batching`: continuous batching on the ~100M generated model: 1, 4, 16 and
 * 32 concurrent requests of 128 prompt + 128 output tokens; total output tokens/s, time to
 * first token (median, p95), time per output token, and where the engine's time went (its
 * prefill and decode-only steps, from the step counters in engine.stats()). Decode is bandwidth-bound, so a
 * batch should multiply tokens per weight read (target: 16 concurrent >= 6x 1 concurrent).
 * Env: BENCH_ROUNDS (default 3), BENCH_CONCURRENCY, BENCH_PROMPT_TOKENS, BENCH_OUTPUT_TOKENS.
 */
import type { Engine } from '../src/engine/engine.js';
import { loadBenchEngine, percentile, randomPrompt, timedGenerate } from './engine-load.js';
import { formatTable, markdownTable, median, runStamp, updateResultsSection, writeResultsJson } from './report.js';

const PROMPT = Number(process.env.BENCH_PROMPT_TOKENS ?? 128);
const OUTPUT = Number(process.env.BENCH_OUTPUT_TOKENS ?? 128);
const LEVELS = (process.env.BENCH_CONCURRENCY ?? '1,4,16,32').split(',').map(Number);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));

interface LevelRun {
  concurrency: number;
  outputTps: number;
  ttftMedianMs: number;
  ttftP95Ms: number;
  tpotMedianMs: number;
  seconds: number;
  /** Wall time of the engine's prefill steps (prompt chunks, decode rows riding along) and of its decode-only steps, s. */
  prefillStepS: number;
  decodeStepS: number;
  /** Mean wall time of one decode-only step, ms. */
  decodeStepMs: number;
}

/** One level: `c` requests at once, each PROMPT + OUTPUT tokens, fresh prompts (no prefix reuse). */
async function runLevel(engine: Engine, c: number, round: number): Promise<LevelRun> {
  const vocab = 16384;
  const before = engine.stats();
  const start = performance.now();
  const runs = await Promise.all(
    Array.from({ length: c }, (_, i) =>
      timedGenerate(engine, {
        prompt: randomPrompt(PROMPT, vocab, round * 100_000 + c * 1000 + i),
        maxTokens: OUTPUT,
        ignoreEos: true,
        sampling: { temperature: 0 },
      }),
    ),
  );
  const seconds = (performance.now() - start) / 1000;
  const after = engine.stats();
  const tokens = runs.reduce((n, r) => n + r.tokens, 0);
  const decodeSteps = after.decodeSteps - before.decodeSteps;
  return {
    concurrency: c,
    outputTps: tokens / seconds,
    ttftMedianMs: median(runs.map((r) => r.ttftMs)),
    ttftP95Ms: percentile(
      runs.map((r) => r.ttftMs),
      95,
    ),
    tpotMedianMs: median(runs.map((r) => r.tpotMs)),
    seconds,
    prefillStepS: (after.prefillStepMsSum - before.prefillStepMsSum) / 1000,
    decodeStepS: (after.decodeStepMsSum - before.decodeStepMsSum) / 1000,
    decodeStepMs: decodeSteps > 0 ? (after.decodeStepMsSum - before.decodeStepMsSum) / decodeSteps : 0,
  };
}

async function main(): Promise<void> {
  const { engine } = await loadBenchEngine({ maxBatchSequences: Math.max(...LEVELS) });
  try {
    await timedGenerate(engine, { prompt: randomPrompt(32, 16384, 1), maxTokens: 4, ignoreEos: true, sampling: { temperature: 0 } });
    // Rounds over all levels, the order reversed every round, so that a machine that speeds
    // up or slows down (two shared cores here) weighs on every level alike; each level's
    // numbers are medians over rounds, and the target ratio is the median of the rounds' own.
    const perRound: LevelRun[][] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? LEVELS : [...LEVELS].reverse();
      const runs: LevelRun[] = [];
      for (const c of order) {
        const r = await runLevel(engine, c, round);
        runs.push(r);
        console.error(`round ${round + 1}, concurrency ${c}: ${r.outputTps.toFixed(1)} tok/s`);
      }
      perRound.push(runs);
    }
    const results = LEVELS.map((c) => {
      const at = perRound.map((runs) => runs.find((r) => r.concurrency === c)!);
      return {
        concurrency: c,
        outputTps: median(at.map((r) => r.outputTps)),
        outputTpsRounds: at.map((r) => r.outputTps),
        ttftMedianMs: median(at.map((r) => r.ttftMedianMs)),
        ttftP95Ms: median(at.map((r) => r.ttftP95Ms)),
        tpotMedianMs: median(at.map((r) => r.tpotMedianMs)),
        seconds: median(at.map((r) => r.seconds)),
        prefillStepS: median(at.map((r) => r.prefillStepS)),
        decodeStepS: median(at.map((r) => r.decodeStepS)),
        decodeStepMs: median(at.map((r) => r.decodeStepMs)),
      };
    });
    const base = results[0]!.outputTps;
    const rows = results.map((r) => [
      r.concurrency,
      r.outputTps.toFixed(1),
      r.outputTpsRounds.map((t) => t.toFixed(1)).join(' / '),
      `${(r.outputTps / base).toFixed(2)}x`,
      r.ttftMedianMs.toFixed(0),
      r.ttftP95Ms.toFixed(0),
      r.tpotMedianMs.toFixed(1),
      r.seconds.toFixed(1),
      r.prefillStepS.toFixed(1),
      r.decodeStepS.toFixed(1),
      r.decodeStepMs.toFixed(1),
    ]);
    const headers = [
      'concurrent',
      'output tok/s',
      'per round',
      'vs 1',
      'TTFT median ms',
      'TTFT p95 ms',
      'TPOT median ms',
      'wall s',
      'prefill steps s',
      'decode steps s',
      'decode step ms',
    ];
    console.log(formatTable(headers, rows));
    const { commit, date } = runStamp();
    writeResultsJson('batching', { adapter: engine.adapterName, date, commit, prompt: PROMPT, output: OUTPUT, rounds: ROUNDS, results });
    updateResultsSection(
      'batching',
      `## Continuous batching\n\nAdapter: ${engine.adapterName}. Model: generated ~100M Llama, ${engine.rt.preferredDType} weights. ${PROMPT} prompt + ${OUTPUT} output tokens per request; ${ROUNDS} rounds over the levels, order reversed every round, medians over rounds. Date: ${date}, commit ${commit}. Command: \`npm run bench:batching\`. Where the time goes (engine step counters): the wall time of its prefill steps (prompt chunks, with any decode rows riding along) and of its decode-only steps, and the mean decode-only step.\n\n` +
        markdownTable(headers, rows) +
        `\n\n${targetLine(perRound)}`,
    );
  } finally {
    await engine.close();
  }
}

/** The target: 16 concurrent against 1, the median of each round's own ratio. */
function targetLine(perRound: LevelRun[][]): string {
  const target = 'Target: throughput at 16 concurrent >= 6x throughput at 1';
  const ratios = perRound.flatMap((runs) => {
    const one = runs.find((r) => r.concurrency === 1);
    const sixteen = runs.find((r) => r.concurrency === 16);
    return one && sixteen ? [sixteen.outputTps / one.outputTps] : [];
  });
  if (ratios.length === 0) return `${target} (not judged: this run lacks 1 or 16).`;
  const ratio = median(ratios);
  return `${target}: ${ratio.toFixed(2)}x here (median of the rounds' ratios ${ratios.map((r) => r.toFixed(2) + 'x').join(', ')}), ${ratio >= 6 ? 'met' : '**not met**'}.`;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
