/**
 * GPU sizing benchmark: static sizing plus decode curves measured on this adapter.
 * Run: npm run bench:sizing -- --shape 1b --max-layers 2 --dtype f16 --memory 80GiB --tpot-ms 50
 *      npm run bench:sizing -- --model DIR --batches 1,2,4,8 --contexts 128,512
 * Same options as `autoglm bench sizing` (which this calls); writes bench/results/sizing-*.
 */
import { runBench } from '../src/cli/bench.js';

await runBench(['sizing', ...process.argv.slice(2)]);
process.exit(0);
