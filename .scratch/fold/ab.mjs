// two engines on the 100M model (norms folded / not), decode rounds alternating in one process
import { loadBenchEngine, randomPrompt, timedGenerate } from '../../dist/bench/engine-load.js';
const streams = Number(process.argv[2] ?? 1);
const rounds = Number(process.argv[3] ?? 8);
const a = (await loadBenchEngine({ foldNorms: true })).engine;
const b = (await loadBenchEngine({ foldNorms: false })).engine;
const res = { folded: [], unfolded: [] };
const cpu = { folded: [], unfolded: [] };
const run = async (engine, round) => {
  const c0 = process.cpuUsage();
  const t = await Promise.all(Array.from({ length: streams }, (_, i) => timedGenerate(engine, { prompt: randomPrompt(32, 16000, 1000 * round + i + 7), maxTokens: 48, ignoreEos: true, sampling: { temperature: 0 } })));
  const c = process.cpuUsage(c0);
  const tpot = t.map((x) => x.tpotMs).sort((x, y) => x - y)[Math.floor(t.length / 2)];
  return { tpot, cpuPerTok: (c.user + c.system) / 1000 / (48 * streams) };
};
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? [['unfolded', b], ['folded', a]] : [['folded', a], ['unfolded', b]];
  for (const [name, e] of order) {
    const x = await run(e, r);
    if (r > 0) { res[name].push(x.tpot); cpu[name].push(x.cpuPerTok); }
  }
}
const med = (v) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
const ratios = res.folded.map((v, i) => v / res.unfolded[i]);
console.log(`streams=${streams} tpot folded ${res.folded.map((v) => v.toFixed(1)).join(' ')}`);
console.log(`streams=${streams} tpot unfold ${res.unfolded.map((v) => v.toFixed(1)).join(' ')}`);
console.log(`median tpot folded ${med(res.folded).toFixed(1)} unfolded ${med(res.unfolded).toFixed(1)}; per-round ratio median ${med(ratios).toFixed(3)}; cpu ms/token folded ${med(cpu.folded).toFixed(1)} unfolded ${med(cpu.unfolded).toFixed(1)}`);
process.exit(0);
