import { afterAll, expect, test } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { call } from './support/client.js';
import { freePort, httpStatus, spawnGateway, spawnWorker, stopAll, waitFor, waitReady, type WorkerProcess } from './support/processes.js';

// `autoglm gateway` (the CLI process) gets SIGTERM while streams run through it: they
// finish whole, and the process exits 0 soon after the last one (before d51ff46 the
// clients' keep-alive connections held close(), and a half-sent request held it for ever).
const SECRET = 'sigterm-secret';
const started: { workers: WorkerProcess[]; gateways: ChildProcess[] } = { workers: [], gateways: [] };

afterAll(async () => {
  for (const g of started.gateways) if (g.exitCode === null && g.signalCode === null) g.kill('SIGKILL');
  await stopAll(started.workers);
});

test('SIGTERM with streams in flight: every stream completes, then the gateway exits 0', async () => {
  const w = spawnWorker({ kind: 'scripted', port: await freePort(), clusterSecret: SECRET, tokenDelayMs: 50 });
  started.workers.push(w);
  await waitReady(w, 20_000);
  const port = await freePort();
  const g = spawnGateway({ port, clusterSecret: SECRET, extraArgs: ['--registry', 'static', '--workers', w.url] });
  started.gateways.push(g);
  const exited = new Promise<number | null>((r) => g.once('exit', (code) => r(code)));
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await httpStatus(`${base}/ready`)) === 200, 10_000, 'gateway ready');
  const body = { model: 'demo-stories', prompt: 'hi', max_tokens: 30, stream: true };
  const streams = Array.from({ length: 3 }, () => call(base, '/v1/completions', body));
  await new Promise((r) => setTimeout(r, 300));
  g.kill('SIGTERM');
  const t0 = performance.now();
  for (const o of await Promise.all(streams)) expect([o.status, o.error, o.text.length]).toEqual([200, null, 30]);
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running after 5 s'), 5000))]);
  expect(code).toBe(0);
  expect(performance.now() - t0).toBeLessThan(5000);
});
