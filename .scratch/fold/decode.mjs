// one-stream decode ms/token of the generated 100M model; 1 and 16 streams
import { loadBenchEngine, randomPrompt, timedGenerate } from '../../dist/bench/engine-load.js';
const { engine } = await loadBenchEngine({ foldNorms: !process.env.NO_FOLD });
const streams = Number(process.argv[2] ?? 1);
const out = [];
for (let round = 0; round < 9; round++) {
  const t = await Promise.all(Array.from({ length: streams }, (_, i) => timedGenerate(engine, { prompt: randomPrompt(32, 16000, 1000 * round + i + 7), maxTokens: 48, ignoreEos: true, sampling: { temperature: 0 } })));
  if (round > 0) out.push(t.map((x) => x.tpotMs).sort((a, b) => a - b)[Math.floor(t.length / 2)]);
}
const cpu = process.cpuUsage();
console.log(`${process.env.NO_FOLD ? 'unfolded' : 'folded'} streams=${streams} tpot ms: ${out.map((x) => x.toFixed(1)).join(' ')}`);
await engine.close?.();
process.exit(0);
