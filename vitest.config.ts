import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Test files that compile the most kernel variants, slowest first (seconds of one run on a
 * 2-core lavapipe machine with an empty Mesa shader cache, 2026-12-07: 259, 218, 139, 129,
 * 109, 95, 94, 70). A fresh clone has no timings for vitest to order by, so it starts the
 * largest files first, and these are not the largest: attention-cpu-decode started last and
 * kept one of the two workers busy alone for its last 139 s. Started first, they leave the
 * short files for the end. With a warm shader cache they take seconds, and the order costs
 * nothing.
 */
const COMPILE_HEAVY = [
  'test/kernels/matmul.test.ts',
  'test/kernels/attention.test.ts',
  'test/kernels/attention-cpu-decode.test.ts',
  'test/engine/architectures.test.ts',
  'test/server/tool-calls-api.test.ts',
  'test/kernels/matmul-int8.test.ts',
  'test/engine/lora.test.ts',
  'test/engine/speculative-decoding.test.ts',
];

class CompileHeavyFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification): number => {
      const i = COMPILE_HEAVY.findIndex((path) => f.moduleId.endsWith(path));
      return i < 0 ? COMPILE_HEAVY.length : i;
    };
    // stable: the rest keep the order vitest chose
    return sorted
      .map((f, i) => ({ f, i }))
      .sort((a, b) => rank(a.f) - rank(b.f) || a.i - b.i)
      .map(({ f }) => f);
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds dist/ (incremental tsc) for tests that run the CLI as a child process.
    globalSetup: ['test/global-setup.ts'],
    // Dawn's native device does not survive worker threads well; each test file gets its
    // own process and destroys its device in afterAll.
    pool: 'forks',
    // lavapipe runs on the CPU: two cores, so two test files at a time
    maxWorkers: 2,
    sequence: { sequencer: CompileHeavyFirst },
    testTimeout: 120_000,
    // Cluster suites start real workers in beforeAll; each warms up (compiles its kernels)
    // before it is ready, which on a cold shader cache (a fresh CI machine) takes a minute.
    hookTimeout: 240_000,
  },
});
