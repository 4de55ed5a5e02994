/** `autoglm bench` subcommands run in-process: reports land in --out with their metadata. */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runBench } from '../../src/cli/bench.js';
import { startFakeServer, type FakeServer } from './helpers/fake-openai-server.js';

let out: string;
let server: FakeServer;
beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'bench-cli-'));
  server = await startFakeServer({ ttftMs: 20, itlMs: 5 });
});
afterAll(async () => {
  await server.close();
  await rm(out, { recursive: true, force: true });
});

async function capture(argv: string[]): Promise<string> {
  let text = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    text += String(chunk);
    return true;
  });
  try {
    await runBench(argv);
  } finally {
    spy.mockRestore();
  }
  return text;
}

async function newestFiles(dir: string, kind: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.startsWith(kind)).sort();
}

/** The text of the newest sizing run's file with this extension in dir. */
async function newestSizingFile(dir: string, ext: '.json' | '.md'): Promise<string> {
  const files = await newestFiles(dir, 'sizing-');
  return readFile(
    join(
      dir,
      files.findLast((f) => f.endsWith(ext))!,
    ),
    'utf8',
  );
}

describe('autoglm bench', () => {
  it('serve: a concurrency sweep against a loopback server writes JSON, Markdown and SVG charts', async () => {
    const dir = join(out, 'serve');
    const text = await capture([
      'serve',
      '--url',
      server.url,
      '--num-requests',
      '6',
      '--max-concurrency',
      '1,3',
      '--input-len',
      '4-8',
      '--output-len',
      '5',
      '--ttft-ms',
      '1000',
      '--out',
      dir,
    ]);
    expect(text).toContain('concurrency 1: 6 ok, 0 failed');
    expect(text).toContain('concurrency 3: 6 ok, 0 failed');
    const files = await newestFiles(dir, 'serve-');
    expect(files.filter((f) => f.endsWith('.svg')).length).toBe(3); // percentiles, throughput, latency
    const json = JSON.parse(
      await readFile(
        join(
          dir,
          files.find((f) => f.endsWith('.json'))!,
        ),
        'utf8',
      ),
    ) as {
      meta: { kind: string; gitCommit: string | null; date: string; argv: string[] };
      results: { config: { maxConcurrency: number }; metrics: { completed: number; goodRequests: number; totalOutputTokens: number } }[];
    };
    expect(json.meta.kind).toBe('serve');
    expect(json.meta.gitCommit).toMatch(/^[0-9a-f]{40}$/);
    expect(json.meta.argv.slice(0, 2)).toEqual(['bench', 'serve']);
    expect(json.results.map((r) => r.config.maxConcurrency)).toEqual([1, 3]);
    for (const r of json.results) expect(r.metrics).toMatchObject({ completed: 6, goodRequests: 6, totalOutputTokens: 30 });
    const md = await readFile(
      join(
        dir,
        files.find((f) => f.endsWith('.md'))!,
      ),
      'utf8',
    );
    expect(md).toContain('# Serving benchmark');
    expect(md).toContain('TTFT <= 1000 ms');
    for (const svg of files.filter((f) => f.endsWith('.svg'))) expect(md).toContain(`](${svg})`);
  });

  it('sizing --static-only for a preset shape prints and records the arithmetic', async () => {
    const dir = join(out, 'sizing');
    const text = await capture(['sizing', '--shape', '7b', '--static-only', '--memory', '80GiB', '--out', dir]);
    expect(text).toContain('parameters 6,738,415,616');
    expect(text).toMatch(/4096\s+29\s/);
    const json = JSON.parse(await newestSizingFile(dir, '.json')) as {
      meta: { model: { numLayers: number; source: string }; dtype: string };
      results: { static: { kvBytesPerToken: number }; measured: null };
    };
    expect(json.meta.model).toMatchObject({ numLayers: 32, source: '7b shape' });
    expect(json.meta.dtype).toBe('f16');
    expect(json.results.static.kvBytesPerToken).toBe(524_288);
    expect(json.results.measured).toBeNull();
  });

  it('sizing --max-loras puts the LoRA slots in the printout, the JSON and the Markdown', async () => {
    const dir = join(out, 'sizing-lora');
    const text = await capture(['sizing', '--shape', '7b', '--static-only', '--max-loras', '8', '--out', dir]);
    expect(text).toContain('LoRA slots 2.14 GiB');
    const json = JSON.parse(await newestSizingFile(dir, '.json')) as { results: { static: { loraBytes: number } } };
    expect(json.results.static.loraBytes).toBe(2_300_575_744);
    expect(await newestSizingFile(dir, '.md')).toContain('| LoRA adapter slots (every projection) | 2.14 GiB |');
    await expect(runBench(['sizing', '--shape', '7b', '--static-only', '--max-lora-rank', '8'])).rejects.toThrow(/give --max-loras too/);
    await expect(runBench(['sizing', '--shape', '7b', '--static-only', '--max-loras', '65'])).rejects.toThrow(
      /--max-loras must be an integer from 1 to 64/,
    );
  });

  it('bad input is a typed error naming the flag, never a crash', async () => {
    await expect(runBench(['sizing', '--shape', '3b', '--static-only', '--out', out])).rejects.toThrow(/unknown shape '3b'/);
    await expect(runBench(['sizing', '--shape', '7b', '--memory', 'lots', '--static-only'])).rejects.toThrow(/bad memory 'lots'/);
    await expect(runBench(['serve'])).rejects.toThrow(/--url is required/);
    await expect(runBench(['serve', '--url', server.url, '--input-len', '0'])).rejects.toThrow(/bad input-len/);
    await expect(runBench(['serve', '--url', server.url, '--bogus'])).rejects.toThrow(/Unknown option '--bogus'/);
    await expect(runBench(['nope'])).rejects.toThrow(/unknown bench command 'nope'/);
  });
});
