/**
 * Our engine vs llama.cpp (node-llama-cpp, optional) on the same weights exported to GGUF.
 * Run: npm run bench:compare -- --model models/demo-stories [--dtypes f32,f16] [--llama-threads 1]
 * Same options as `autoglm bench compare` (which this calls); writes bench/results/compare-*.
 */
import { runBench } from '../src/cli/bench.js';

await runBench(['compare', ...process.argv.slice(2)]);
process.exit(0);
