/**
 * The real CLI as a child process (built by test/global-setup.ts): SIGTERM during a
 * stream lets the stream finish, turns /ready to 503 while /health stays 200, refuses new
 * requests with 503, and exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';
import { DEMO_MODEL_DIR } from './constants.js';
import { postJson, readSse, waitFor } from './http.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
let child: ChildProcess | null = null;

afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
});

/** Starts `autoglm serve` on a free port; resolves with its base URL once it logs "serving". */
function startServe(args: string[]): Promise<{ child: ChildProcess; url: string; logs: string[] }> {
  const proc = spawn(process.execPath, ['dist/src/cli/main.js', 'serve', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  return new Promise((resolve, reject) => {
    let buffered = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        logs.push(line);
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'serving' && entry.url) resolve({ child: proc, url: entry.url, logs });
        } catch {
          // not a log line
        }
      }
    });
    proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
    proc.on('exit', (code) => reject(new Error(`serve exited early (${code}):\n${logs.join('\n')}`)));
  });
}

test('SIGTERM drains: the running stream completes, new requests get 503, exit code 0', async () => {
  const started = await startServe([
    '--model',
    DEMO_MODEL_DIR,
    '--served-model-name',
    'demo',
    '--port',
    '0',
    '--no-auth',
    '--drain-timeout-ms',
    '60000',
    '--kv-cache-bytes',
    String(16 * 1024 * 1024),
  ]);
  child = started.child;
  const { url } = started;
  const exited = new Promise<number | null>((resolve) => child!.on('exit', (code) => resolve(code)));
  expect((await fetch(`${url}/ready`)).status).toBe(200);

  const response = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', prompt: 'Once upon a time', max_tokens: 48, ignore_eos: true, temperature: 0, stream: true }),
  });
  expect(response.status).toBe(200);
  let signalled = false;
  const texts: string[] = [];
  const streamDone = readSse(response, (data) => {
    if (data !== '[DONE]') texts.push((JSON.parse(data) as { choices: { text: string }[] }).choices[0]?.text ?? '');
    if (!signalled) {
      signalled = true;
      child!.kill('SIGTERM');
    }
  });

  await waitFor(async () => (await fetch(`${url}/ready`)).status === 503, 10_000, '/ready to turn 503');
  expect((await fetch(`${url}/health`)).status).toBe(200);
  const refused = await postJson(`${url}/v1/completions`, { model: 'demo', prompt: 'Hi', max_tokens: 2 }, {});
  expect(refused.status).toBe(503);
  expect((refused.json.error as { code: string }).code).toBe('server_draining');

  const events = await streamDone;
  expect(events.at(-1)).toBe('[DONE]');
  const final = JSON.parse(events.at(-2)!) as { choices: { finish_reason: string }[] };
  expect(final.choices[0]!.finish_reason).toBe('length');
  expect(texts.join('').length).toBeGreaterThan(0);
  expect(await exited).toBe(0);
  expect(started.logs.join('\n')).toContain('drained');
}, 240_000); // the server warms up (compiles its kernels) before it serves: a minute on a cold shader cache
