/**
 * Builds dist/ once per test run: the server's SIGTERM test runs the real CLI
 * (node dist/src/cli/main.js) as a child process, and the tokenizer worker pool needs
 * JavaScript. tsc is incremental, so an up-to-date tree costs a couple of seconds.
 * Type errors elsewhere in a shared, in-progress tree do not stop emission; the set-up
 * only fails when the CLI itself was not produced. AUTOGLM_SKIP_BUILD=1 skips it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export default function setup(): void {
  if (process.env.AUTOGLM_SKIP_BUILD === '1') return;
  const tsc = spawnSync(
    process.execPath,
    ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--incremental', '--tsBuildInfoFile', 'dist/.tsbuildinfo'],
    { cwd: root, encoding: 'utf8' },
  );
  if (!existsSync(`${root}dist/src/cli/main.js`)) throw new Error(`build produced no dist/src/cli/main.js:\n${tsc.stdout}\n${tsc.stderr}`);
}
