/**
 * `npm run bench:engine`: the ~100M-parameter generated Llama on this adapter: load time,
 * prefill tokens/s at 128 and 512 prompt tokens, decode tokens/s, and decode as a fraction
 * of its bandwidth bound (weight bytes per token over the read bandwidth measured in the
 * same run by the kernel benchmark's ceiling kernel).
 */
import { measureCeilings } from './ceilings.js';
import { loadBenchEngine, randomPrompt, timedGenerate } from './engine-load.js';
import { formatTable, markdownTable, median, runStamp, updateResultsSection, writeResultsJson } from './report.js';

const REPEATS = 3;

async function main(): Promise<void> {
  const { engine, loadMs, generateMs } = await loadBenchEngine();
  const vocab = 16384;
  try {
    console.error(
      `adapter: ${engine.adapterName}; model generated in ${(generateMs / 1000).toFixed(1)} s, loaded in ${(loadMs / 1000).toFixed(1)} s`,
    );
    // warm-up: compiles every pipeline
    await timedGenerate(engine, { prompt: randomPrompt(32, vocab, 999), maxTokens: 4, ignoreEos: true, sampling: { temperature: 0 } });

    const prefill: Record<number, number> = {};
    for (const n of [128, 512]) {
      const times = [];
      for (let r = 0; r < REPEATS; r++) {
        const t = await timedGenerate(engine, { prompt: randomPrompt(n, vocab, n * 10 + r), maxTokens: 1, sampling: { temperature: 0 } });
        times.push(t.ttftMs);
      }
      prefill[n] = n / (median(times) / 1000);
    }

    const decodeRuns = [];
    for (let r = 0; r < REPEATS; r++) {
      decodeRuns.push(
        await timedGenerate(engine, {
          prompt: randomPrompt(16, vocab, 77 + r),
          maxTokens: 64,
          ignoreEos: true,
          sampling: { temperature: 0 },
        }),
      );
    }
    const tpotMs = median(decodeRuns.map((d) => d.tpotMs));
    const decodeTps = 1000 / tpotMs;

    const ceilings = await measureCeilings(engine.rt);
    const boundTps = (ceilings.readGBps * 1e9) / engine.weightBytes;
    const fraction = decodeTps / boundTps;

    const rows = [
      ['load', `${(loadMs / 1000).toFixed(2)} s`],
      ['prefill 128', `${prefill[128]!.toFixed(1)} tok/s`],
      ['prefill 512', `${prefill[512]!.toFixed(1)} tok/s`],
      ['decode (batch 1)', `${decodeTps.toFixed(2)} tok/s (${tpotMs.toFixed(1)} ms/token)`],
      ['weight bytes / token', `${(engine.weightBytes / 1e6).toFixed(1)} MB`],
      ['read bandwidth (same run)', `${ceilings.readGBps.toFixed(2)} GB/s`],
      ['bandwidth bound', `${boundTps.toFixed(2)} tok/s`],
      ['decode / bound', `${(fraction * 100).toFixed(0)}%`],
    ];
    console.log(formatTable(['measure', 'value'], rows));
    const { commit, date } = runStamp();
    writeResultsJson('engine', {
      adapter: engine.adapterName,
      date,
      commit,
      model: '100m llama (generated, f16 weights)',
      loadMs,
      prefill,
      decodeTps,
      tpotMs,
      ceilings,
      weightBytes: engine.weightBytes,
      fraction,
    });
    updateResultsSection(
      'engine',
      `## Engine (single sequence)\n\nAdapter: ${engine.adapterName}. Model: generated ~100M Llama (12 layers, hidden 768, vocab 16384), f16 weights. Date: ${date}, commit ${commit}. Command: \`npm run bench:engine\`.\n\n` +
        markdownTable(['measure', 'value'], rows) +
        `\n\nDecode target on lavapipe: >= 60% of the bandwidth bound.`,
    );
  } finally {
    await engine.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
