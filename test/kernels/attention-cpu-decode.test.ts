import { describe } from 'vitest';
import { useRuntime } from '../helpers/gpu.js';
import { CASES, registerCaseTests, SOFTCAP_CASES, takesDecodeKernels, type KernelChoice } from './attention-cases.js';

const runtime = useRuntime();

// The CPU adapters' decode kernels over the attention case table and its soft-capped cases:
// the lanes one and the dims one (dims needs subgroups and headDim a multiple of 32). Cases
// without decode rows run only in attention.test.ts.
const CPU_DECODE: readonly KernelChoice[] = [
  ['lanes decode', { decodeLanes: 8, decodeDims: false }],
  ['dims decode', { decodeDims: true }],
];
// The dims kernel's main loop takes keys in blocks (1 or 4 by default, by the item's
// registers); each block size leaves other tails for the one-key loop. Every block size
// runs on the cases whose lengths, splits and score ranges exercise those tails, not on
// all of them: each (shape, block size) is a separate shader, and lavapipe compiles one in
// seconds on a machine without a warm shader cache (a fresh CI machine).
const DIMS_BLOCKS: readonly KernelChoice[] = [1, 3, 4].map(
  (kb) => [`dims decode, ${kb} key${kb > 1 ? 's' : ''} per block`, { decodeDims: true, dimsKeysPerBlock: kb }] as const,
);
const DIMS_BLOCK_CASES = new Set([
  'decode and a prefill chunk with scores in the hundreds, GQA 2',
  'decode batch of awkward lengths, GQA 2',
  'multi-row decode (qLen 3) with forced splits',
  'softcap 20, scores in the hundreds: decode and a prefill chunk, GQA 2',
]);

describe('attention, CPU decode kernels', () => {
  registerCaseTests(
    runtime,
    (c) => (!takesDecodeKernels(c) ? [] : DIMS_BLOCK_CASES.has(c.name) ? [...CPU_DECODE, ...DIMS_BLOCKS] : CPU_DECODE),
    CPU_DECODE,
    [...CASES, ...SOFTCAP_CASES],
  );
});
