/**
 * `npm run bench:profile`: where an engine step's GPU time goes, per kernel, on the ~100M
 * generated model (the bench:batching model): decode steps of one stream and of 16
 * streams, and the prefill steps of 16 prompts of 128 tokens. Each dispatch is timed on the
 * device by the dispatch profiler (src/kernels/dispatch-profiler.ts: one pass per dispatch,
 * so profiled steps run somewhat slower than plain ones; the shares are the point).
 * Steps are counted by the sampling kernel, which runs once in every step.
 * Env: BENCH_PROFILE_STEPS (decode steps profiled per scenario, default 12).
 */
import type { Engine } from '../src/engine/engine.js';
import { DispatchProfiler, type KernelTime } from '../src/kernels/dispatch-profiler.js';
import { loadBenchEngine, randomPrompt, timedGenerate } from './engine-load.js';
import { formatTable, markdownTable, runStamp, updateResultsSection, writeResultsJson } from './report.js';

const STEPS = Number(process.env.BENCH_PROFILE_STEPS ?? 12);
const VOCAB = 16384;
const PROMPT = 128;

interface Scenario {
  name: string;
  steps: number;
  /** Engine wall time per step (its step counters) while profiled. */
  wallMsPerStep: number;
  kernels: KernelTime[];
}

/** Profiles the engine while `until` says go on; steps = sampling dispatches. */
async function profile(engine: Engine, name: string, stepKind: 'decode' | 'prefill', until: () => boolean): Promise<Scenario> {
  const profiler = new DispatchProfiler(engine.rt);
  const before = engine.stats();
  engine.rt.profiler = profiler;
  try {
    while (until()) await new Promise((r) => setTimeout(r, 2));
  } finally {
    engine.rt.profiler = null;
  }
  const after = engine.stats();
  // let the last profiled step finish before reading its timestamps
  await engine.rt.device.queue.onSubmittedWorkDone();
  const kernels = await profiler.read();
  profiler.destroy();
  const steps = kernels.find((k) => k.kernel === 'sample')?.dispatches ?? 0;
  const count = stepKind === 'decode' ? after.decodeSteps - before.decodeSteps : after.prefillSteps - before.prefillSteps;
  const ms = stepKind === 'decode' ? after.decodeStepMsSum - before.decodeStepMsSum : after.prefillStepMsSum - before.prefillStepMsSum;
  return { name, steps, wallMsPerStep: count > 0 ? ms / count : NaN, kernels };
}

/** `c` streams of PROMPT + `tokens` tokens; resolves when all are done. */
function streams(engine: Engine, c: number, tokens: number, seed: number, onFirst: () => void): Promise<unknown> {
  return Promise.all(
    Array.from({ length: c }, async (_, i) => {
      let first = true;
      for await (const _ev of engine.generate({
        prompt: randomPrompt(PROMPT, VOCAB, seed + i),
        maxTokens: tokens,
        ignoreEos: true,
        sampling: { temperature: 0 },
      })) {
        if (first) onFirst();
        first = false;
      }
    }),
  );
}

async function decodeScenario(engine: Engine, c: number, seed: number): Promise<Scenario> {
  let started = 0;
  const done = streams(engine, c, 4 * STEPS + 16, seed, () => started++);
  // every stream past its prompt: only decode steps from here
  while (started < c) await new Promise((r) => setTimeout(r, 2));
  const from = engine.stats().decodeSteps;
  const s = await profile(engine, `decode, ${c} stream${c > 1 ? 's' : ''}`, 'decode', () => engine.stats().decodeSteps < from + STEPS);
  await done;
  return s;
}

async function prefillScenario(engine: Engine, c: number, seed: number): Promise<Scenario> {
  let started = 0;
  const done = streams(engine, c, 2, seed, () => started++);
  const s = await profile(engine, `prefill, ${c} prompts of ${PROMPT}`, 'prefill', () => started < c);
  await done;
  return s;
}

function rowsOf(s: Scenario): (string | number)[][] {
  const total = s.kernels.reduce((t, k) => t + k.ms, 0);
  return s.kernels.map((k) => [
    s.name,
    k.kernel,
    (k.dispatches / s.steps).toFixed(1),
    (k.ms / s.steps).toFixed(2),
    `${((100 * k.ms) / total).toFixed(1)}%`,
  ]);
}

async function main(): Promise<void> {
  const { engine } = await loadBenchEngine({ maxBatchSequences: 16 });
  try {
    // compile every kernel the scenarios use before anything is timed
    await timedGenerate(engine, { prompt: randomPrompt(32, VOCAB, 1), maxTokens: 4, ignoreEos: true, sampling: { temperature: 0 } });
    await streams(engine, 16, 3, 500, () => undefined);
    const scenarios = [
      await decodeScenario(engine, 1, 1000),
      await decodeScenario(engine, 16, 2000),
      await prefillScenario(engine, 16, 3000),
    ];
    const headers = ['scenario', 'kernel', 'dispatches/step', 'GPU ms/step', 'share'];
    const rows = scenarios.flatMap(rowsOf);
    console.log(formatTable(headers, rows));
    const summary = scenarios.map((s) => {
      const gpu = s.kernels.reduce((t, k) => t + k.ms, 0) / s.steps;
      return `${s.name}: ${s.steps} steps profiled, GPU ${gpu.toFixed(1)} ms/step summed over dispatches, engine wall ${s.wallMsPerStep.toFixed(1)} ms/step while profiled`;
    });
    for (const line of summary) console.log(line);
    const { commit, date } = runStamp();
    writeResultsJson('profile', { adapter: engine.adapterName, date, commit, steps: STEPS, scenarios });
    updateResultsSection(
      'profile',
      `## Step profile (GPU time per kernel)\n\nAdapter: ${engine.adapterName}. Model: generated ~100M Llama, ${engine.rt.preferredDType} weights; prompts of ${PROMPT} tokens, greedy. Date: ${date}, commit ${commit}. Command: \`npm run bench:profile\`. Each dispatch timed by GPU timestamps in a pass of its own (profiled steps run slower than plain ones; read the shares); steps counted by the sampling kernel, which runs once per step.\n\n` +
        summary.map((l) => `- ${l}`).join('\n') +
        '\n\n' +
        markdownTable(headers, rows),
    );
  } finally {
    await engine.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
