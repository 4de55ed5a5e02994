import { defineConfig } from 'vitest/config';

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
    testTimeout: 120_000,
    // Cluster suites start real workers in beforeAll; each warms up (compiles its kernels)
    // before it is ready, which on a cold shader cache (a fresh CI machine) takes a minute.
    hookTimeout: 240_000,
  },
});
