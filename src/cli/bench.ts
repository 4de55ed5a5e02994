/**
 * `autoglm bench <kernels|sizing|serve|compare> [options]`: benchmarks for sizing GPUs.
 * Each subcommand prints a readable summary, and writes JSON (with adapter, model shape,
 * dtype, commit and date) plus a Markdown report with SVG charts to bench/results/.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { formatBytes, parseByteSize } from '../bench/byte-size.js';
import { runCompare } from '../bench/compare-run.js';
import type { GgufDtype } from '../bench/gguf-export.js';
import { parseLengthDistribution } from '../bench/lengths.js';
import type { LlamaGpuChoice } from '../bench/llama-cpp.js';

import { runLoad, type LoadResult } from '../bench/load-generator.js';
import { num } from '../bench/markdown.js';
import { SHAPE_NAMES } from '../bench/model-source.js';
import { progressBar } from '../bench/progress.js';
import { runMetadata, writeRun } from '../bench/run-metadata.js';
import { levelOf, serveCharts, serveMarkdown } from '../bench/serve-report.js';
import { runSizing, type SizingRunOptions } from '../bench/sizing-run.js';
import { requireWorkerUrl } from '../cluster/types.js';
import { DEFAULT_MAX_LORA_RANK, MAX_LORA_ADAPTERS } from '../engine/lora/load-adapters.js';
import { MAX_LORA_RANK } from '../engine/lora/peft-adapter.js';
import { AutoGlmError } from '../errors.js';
import { MAX_TIMER_MS } from './flags.js';

const LLAMA_GPUS: readonly LlamaGpuChoice[] = ['auto', 'cpu', 'cuda', 'vulkan', 'metal'];

const USAGE = `Usage: autoglm bench <command> [options]

Commands:
  kernels   kernel table and rooflines on this adapter (runs bench/kernels; --quick, --sweep)
  sizing    memory sizing and measured decode curves for a model
            --model DIR | --shape ${SHAPE_NAMES.join('|')}  [--memory 80GiB (env AUTOGLM_BENCH_MEMORY)] [--dtype f16|f32|int8]
            [--tpot-ms 50] [--bandwidth 3.3TB] [--memory-utilization 0.9] [--static-only] [--batches 1,2,4,8]
            [--contexts 128,512] [--sizing-contexts N[,N..]] [--decode-tokens 24] [--repeats 3] [--max-layers N]
            [--max-loras N [--max-lora-rank 16]] (LoRA adapter slots beside the weights)
  serve     load generator for any OpenAI-compatible endpoint
            --url URL [--model-name NAME] [--endpoint completions|chat] [--num-requests 100]
            [--request-rate inf|R[,R..]] [--burstiness 1] [--max-concurrency N[,N..]]
            [--input-len 128|64-256|128~0.25|normal:128:32] [--output-len 128] [--prompt-mode text|token-ids]
            [--vocab-size N] [--ttft-ms T] [--tpot-ms T] [--e2e-ms T] [--warmup 1] [--seed N] [--api-key KEY]
            [--temperature 0] [--timeout-ms 600000] [--no-ignore-eos]
  compare   our engine vs llama.cpp (node-llama-cpp, optional) on the same weights via GGUF
            --model DIR [--dtypes f32,f16] [--max-tokens 32] [--prefill-tokens 256] [--repeats 3]
            [--llama-gpu ${LLAMA_GPUS.join('|')}] [--llama-threads N] [--prompt TEXT ...]

Common: --out DIR (default bench/results), --no-report (print only)
`;

export async function runBench(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'kernels':
      return benchKernels(rest);
    case 'sizing':
      return benchSizing(rest, argv);
    case 'serve':
      return benchServe(rest, argv);
    case 'compare':
      return benchCompare(rest, argv);
    case undefined:
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      throw new AutoGlmError('invalid_request', `unknown bench command '${command}'\n\n${USAGE}`);
  }
}

/** bench/kernels.ts runs on import and exports no function yet: run its build as a child. */
async function benchKernels(argv: string[]): Promise<void> {
  const script = fileURLToPath(new URL('../../bench/kernels.js', import.meta.url));
  if (!existsSync(script)) throw new AutoGlmError('invalid_request', `kernel benchmark not built (${script} missing): run npm run build`);
  const code = await new Promise<number>((done) => {
    const child = spawn(process.execPath, [script, ...argv], { stdio: 'inherit' });
    // a stopped parent must not leave the benchmark running on the GPU
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on('SIGINT', forward).on('SIGTERM', forward);
    child.on('exit', (c) => {
      process.off('SIGINT', forward).off('SIGTERM', forward);
      done(c ?? 1);
    });
  });
  if (code !== 0) throw new AutoGlmError('internal_error', `kernel benchmark exited with ${code}`);
}

const COMMON = {
  out: { type: 'string', default: 'bench/results' },
  'no-report': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function bad(param: string, accepts: string, text: string): AutoGlmError {
  return new AutoGlmError('invalid_request', `--${param} must be ${accepts}, got '${text}'`, { param });
}

const DECIMAL = /^(\d+(\.\d*)?|\.\d+)$/;

/** Comma-separated counts (integers >= min), or rates (`real`: positive numbers, `inf` where allowed). */
function list(text: string, param: string, opts: { min?: number; real?: boolean; allowInf?: boolean } = {}): number[] {
  const min = opts.min ?? 1;
  const accepts = opts.real ? `comma-separated numbers above 0${opts.allowInf ? ' or inf' : ''}` : `comma-separated integers >= ${min}`;
  return text.split(',').map((raw) => {
    const s = raw.trim();
    if (opts.allowInf && /^inf(inity)?$/i.test(s)) return Number.POSITIVE_INFINITY;
    // Number() took ' ' as 0, '1.5' as a batch size and 'Infinity' as a count.
    const v = (opts.real ? DECIMAL : /^\d+$/).test(s) ? Number(s) : NaN;
    if (!(opts.real ? v > 0 : v >= min && Number.isSafeInteger(v))) throw bad(param, accepts, text);
    return v;
  });
}

/** A positive finite decimal number (a rate, a target in ms, a ratio). */
function positive(text: string | undefined, param: string): number | undefined {
  if (text === undefined) return undefined;
  const v = DECIMAL.test(text.trim()) ? Number(text) : NaN;
  if (!(v > 0)) throw bad(param, 'a number above 0', text);
  return v;
}

/** An integer within [min, max]: a count of requests, tokens, repeats, layers, or a timeout in ms. */
function integer(text: string | undefined, param: string, min = 1, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (text === undefined) return undefined;
  const v = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(v >= min && v <= max))
    throw bad(param, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`, text);
  return v;
}

/** --out: refused before a run that may take minutes, not when the report is written at its end. */
function outDir(v: Record<string, unknown>): string | undefined {
  if (v['no-report']) return undefined;
  const dir = resolve(v.out as string);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw bad('out', 'a folder (or a path to create one at)', v.out as string);
  return dir;
}

/** --model: a folder, checked before any model loading starts. */
function modelDir(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  if (!existsSync(text) || !statSync(text).isDirectory())
    throw bad('model', 'a model folder (config.json, *.safetensors, tokenizer.json)', text);
  return text;
}

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>): Record<string, string | boolean | string[] | undefined> {
  const all: NonNullable<ParseArgsConfig['options']> = { ...COMMON, ...options };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: all, allowPositionals: false, strict: true, tokens: true });
  } catch (e) {
    // on one line (a value starting with a dash gets three)
    throw new AutoGlmError('invalid_request', `${(e as Error).message.replace(/\s*\n\s*/g, ' ')} (autoglm bench --help lists the flags)`);
  }
  // as serve and gateway: a repeated flag is a mistake, not "the last one wins"
  const seen = new Set<string>();
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option' || all[t.name]?.multiple) continue;
    if (seen.has(t.name))
      throw new AutoGlmError('invalid_request', `--${t.name} was given more than once; give it once.`, { param: t.name });
    seen.add(t.name);
  }
  return parsed.values as Record<string, string | boolean | string[] | undefined>;
}

async function benchSizing(argv: string[], fullArgv: string[]): Promise<void> {
  const v = parse(argv, {
    model: { type: 'string' },
    shape: { type: 'string' },
    memory: { type: 'string', default: process.env.AUTOGLM_BENCH_MEMORY ?? '80GiB' },
    dtype: { type: 'string', default: 'f16' },
    'tpot-ms': { type: 'string' },
    bandwidth: { type: 'string' },
    'memory-utilization': { type: 'string' },
    'static-only': { type: 'boolean', default: false },
    batches: { type: 'string', default: '1,2,4,8' },
    contexts: { type: 'string', default: '128,512' },
    'sizing-contexts': { type: 'string' },
    'decode-tokens': { type: 'string' },
    repeats: { type: 'string' },
    'max-layers': { type: 'string' },
    'max-loras': { type: 'string' },
    'max-lora-rank': { type: 'string' },
  });
  if (v.help) return void process.stdout.write(USAGE);
  const dtype = v.dtype as string;
  const loraSlots = integer(v['max-loras'] as string | undefined, 'max-loras', 1, MAX_LORA_ADAPTERS);
  const loraRank = integer(v['max-lora-rank'] as string | undefined, 'max-lora-rank', 1, MAX_LORA_RANK);
  if (loraRank !== undefined && loraSlots === undefined)
    throw new AutoGlmError('invalid_request', '--max-lora-rank sizes LoRA slots: give --max-loras too', { param: 'max-lora-rank' });
  if (dtype !== 'f16' && dtype !== 'f32' && dtype !== 'int8')
    throw new AutoGlmError('invalid_request', `--dtype must be f16, f32 or int8 (got '${dtype}')`, { param: 'dtype' });
  const memoryUtilization = positive(v['memory-utilization'] as string | undefined, 'memory-utilization');
  if (memoryUtilization !== undefined && memoryUtilization > 1)
    throw bad('memory-utilization', 'a fraction of --memory, above 0 and at most 1', v['memory-utilization'] as string);
  const sizing: SizingRunOptions = {
    modelDir: modelDir(v.model as string | undefined),
    shape: v.shape as string | undefined,
    memoryBytes: parseByteSize(v.memory as string),
    dtype,
    memoryUtilization,
    bandwidthBytesPerS: v.bandwidth ? parseByteSize(v.bandwidth as string, 'bandwidth') : undefined,
    sizingContexts: v['sizing-contexts'] ? list(v['sizing-contexts'] as string, 'sizing-contexts') : undefined,
    tpotTargetMs: positive(v['tpot-ms'] as string | undefined, 'tpot-ms'),
    staticOnly: v['static-only'] as boolean,
    batchSizes: list(v.batches as string, 'batches'),
    measureContexts: list(v.contexts as string, 'contexts'),
    decodeTokens: integer(v['decode-tokens'] as string | undefined, 'decode-tokens'),
    repeats: integer(v.repeats as string | undefined, 'repeats'),
    maxLayers: integer(v['max-layers'] as string | undefined, 'max-layers'),
    ...(loraSlots !== undefined ? { lora: { slots: loraSlots, rank: loraRank ?? DEFAULT_MAX_LORA_RANK } } : {}),
    resultsDir: outDir(v),
    argv: ['bench', ...fullArgv],
  };
  const { results, written } = await runSizing(sizing);
  const s = results.static;
  const lines = [
    `parameters ${s.parameters.toLocaleString('en-US')}, weights ${formatBytes(s.weightBytes)} (${s.dtype}), KV ${formatBytes(s.kvBytesPerToken)}/token, ` +
      `${s.loraBytes > 0 ? `LoRA slots ${formatBytes(s.loraBytes)}, ` : ''}KV budget ${formatBytes(s.kvBudgetBytes)} of ${formatBytes(s.memoryBytes)} (${s.kvTokenCapacity.toLocaleString('en-US')} tokens)${s.fits ? '' : '  DOES NOT FIT'}`,
    'context  max-sequences  TPOT-bound-ms',
    ...s.contexts.map(
      (c) => `${String(c.contextTokens).padStart(7)}  ${String(c.maxSequences).padStart(13)}  ${num(c.tpotLowerBoundMs).padStart(13)}`,
    ),
  ];
  if (results.measured) {
    lines.push('measured: context  batch  TPOT-ms  spread  tokens/s  preemptions');
    for (const p of results.measured) {
      lines.push(
        `          ${String(p.contextTokens).padStart(7)}  ${String(p.batch).padStart(5)}  ${num(p.tpotMs).padStart(7)}  ${`${(p.tpotSpread * 100).toFixed(0)}%`.padStart(6)}  ${num(p.decodeTokensPerS).padStart(8)}  ${p.preemptions}`,
      );
    }
  }
  for (const b of results.largestBatch ?? [])
    lines.push(`largest batch with TPOT <= ${results.tpotTargetMs} ms at context ${b.contextTokens}: ${b.batch ?? 'none'}`);
  if (written) lines.push(`wrote ${written.jsonPath}${written.markdownPath ? ` and ${written.markdownPath}` : ''}`);
  process.stdout.write(lines.join('\n') + '\n');
}

async function benchServe(argv: string[], fullArgv: string[]): Promise<void> {
  const v = parse(argv, {
    url: { type: 'string' },
    'model-name': { type: 'string' },
    endpoint: { type: 'string', default: 'completions' },
    'api-key': { type: 'string' },
    'num-requests': { type: 'string', default: '100' },
    'request-rate': { type: 'string', default: 'inf' },
    burstiness: { type: 'string', default: '1' },
    'max-concurrency': { type: 'string' },
    'input-len': { type: 'string', default: '128' },
    'output-len': { type: 'string', default: '128' },
    'prompt-mode': { type: 'string', default: 'text' },
    'vocab-size': { type: 'string' },
    'ttft-ms': { type: 'string' },
    'tpot-ms': { type: 'string' },
    'e2e-ms': { type: 'string' },
    warmup: { type: 'string', default: '1' },
    // default: a fresh seed per run (recorded in the report), so a server's response cache cannot replay an earlier run
    seed: { type: 'string', default: String(Date.now() % 1_000_000_007) },
    temperature: { type: 'string', default: '0' },
    'timeout-ms': { type: 'string', default: '600000' },
    'no-ignore-eos': { type: 'boolean', default: false },
  });
  if (v.help) return void process.stdout.write(USAGE);
  if (!v.url) throw new AutoGlmError('invalid_request', '--url is required (e.g. http://127.0.0.1:8000)', { param: 'url' });
  // Checked here: a URL that does not parse failed later, in the first fetch, as a runtime error (exit 1).
  const baseUrl = requireWorkerUrl(v.url, '--url', 'url');
  const endpoint = v.endpoint === 'chat' ? '/v1/chat/completions' : v.endpoint === 'completions' ? '/v1/completions' : null;
  if (!endpoint) throw new AutoGlmError('invalid_request', `--endpoint must be completions or chat`, { param: 'endpoint' });
  const promptMode = v['prompt-mode'];
  if (promptMode !== 'text' && promptMode !== 'token-ids')
    throw new AutoGlmError('invalid_request', `--prompt-mode must be text or token-ids`, { param: 'prompt-mode' });
  const rates = list(v['request-rate'] as string, 'request-rate', { real: true, allowInf: true });
  const numRequests = integer(v['num-requests'] as string, 'num-requests')!;
  const temperature = Number(DECIMAL.test((v.temperature as string).trim()) ? v.temperature : NaN);
  if (!(temperature >= 0 && temperature <= 2)) throw bad('temperature', 'a number from 0 to 2', v.temperature as string);
  const seed = integer(v.seed as string, 'seed', 0)!;
  const warmup = integer(v.warmup as string, 'warmup', 0)!;
  // Above 2^31-1 ms, Node's timers fire at once: every request would time out.
  const timeoutMs = integer(v['timeout-ms'] as string, 'timeout-ms', 1, MAX_TIMER_MS);
  const load = {
    burstiness: positive(v.burstiness as string, 'burstiness'),
    inputLength: parseLengthDistribution(v['input-len'] as string, 'input-len'),
    outputLength: parseLengthDistribution(v['output-len'] as string, 'output-len'),
    vocabSize: integer(v['vocab-size'] as string | undefined, 'vocab-size'),
    slo: {
      ttftMs: positive(v['ttft-ms'] as string | undefined, 'ttft-ms'),
      tpotMs: positive(v['tpot-ms'] as string | undefined, 'tpot-ms'),
      e2eMs: positive(v['e2e-ms'] as string | undefined, 'e2e-ms'),
    },
  };
  const out = outDir(v);
  const caps = v['max-concurrency'] ? list(v['max-concurrency'] as string, 'max-concurrency') : [undefined];
  const levels: { rate: number; cap: number | undefined }[] = [];
  for (const rate of rates) for (const cap of caps) levels.push({ rate, cap });
  const results: LoadResult[] = [];
  for (const [i, level] of levels.entries()) {
    const bar = progressBar(`load ${i + 1}/${levels.length}`, numRequests);
    const r = await runLoad({
      baseUrl,
      model: v['model-name'] as string | undefined,
      endpoint,
      apiKey: (v['api-key'] as string | undefined) ?? process.env.AUTOGLM_API_KEY ?? process.env.OPENAI_API_KEY,
      numRequests,
      requestRate: level.rate,
      burstiness: load.burstiness,
      maxConcurrency: level.cap,
      inputLength: load.inputLength,
      outputLength: load.outputLength,
      promptMode,
      vocabSize: load.vocabSize,
      ignoreEos: !v['no-ignore-eos'],
      temperature,
      // each level its own prompts: a server's response cache must not answer a later level from an earlier one
      seed: seed + i * 1_000_003,
      timeoutMs,
      warmupRequests: i === 0 ? warmup : 0,
      slo: load.slo,
      onProgress: (done, total) => bar.update(done, `of ${total}`),
    });
    bar.finish();
    results.push(r);
    printLevel(r);
  }
  if (out !== undefined) {
    const meta = runMetadata({ kind: 'serve', argv: ['bench', ...fullArgv], notes: [`target ${baseUrl}`] });
    const written = writeRun({
      dir: out,
      meta,
      results,
      charts: serveCharts(results),
      markdown: (files) => serveMarkdown(meta, results, files),
    });
    process.stdout.write(`wrote ${written.jsonPath} and ${written.markdownPath}\n`);
  }
}

function printLevel(r: LoadResult): void {
  const m = r.metrics;
  const row = (name: string, s: { mean: number; median: number; p90: number; p99: number }) =>
    `  ${name.padEnd(5)} mean ${num(s.mean).padStart(8)}  median ${num(s.median).padStart(8)}  p90 ${num(s.p90).padStart(8)}  p99 ${num(s.p99).padStart(8)} ms`;
  const errors = Object.entries(m.errorsByType)
    .map(([k, n]) => `${k} x${n}`)
    .join(', ');
  process.stdout.write(
    [
      `${levelOf(r).label}: ${m.completed} ok, ${m.failed} failed${errors ? ` (${errors})` : ''} in ${num(m.durationS)} s`,
      `  ${num(m.requestThroughput)} req/s, goodput ${num(m.goodput)} req/s, ${num(m.outputTokensPerS)} output tok/s, ${num(m.totalTokensPerS)} total tok/s, peak in flight ${r.peakConcurrency}`,
      row('TTFT', m.ttftMs),
      row('TPOT', m.tpotMs),
      row('ITL', m.itlMs),
      row('E2E', m.e2eMs),
      '',
    ].join('\n'),
  );
}

async function benchCompare(argv: string[], fullArgv: string[]): Promise<void> {
  const v = parse(argv, {
    model: { type: 'string' },
    dtypes: { type: 'string', default: 'f32,f16' },
    'max-tokens': { type: 'string', default: '32' },
    'prefill-tokens': { type: 'string', default: '256' },
    repeats: { type: 'string', default: '3' },
    'llama-gpu': { type: 'string', default: 'auto' },
    'llama-threads': { type: 'string' },
    prompt: { type: 'string', multiple: true },
  });
  if (v.help) return void process.stdout.write(USAGE);
  if (!v.model) throw new AutoGlmError('invalid_request', '--model DIR is required', { param: 'model' });
  const llamaGpu = v['llama-gpu'] as LlamaGpuChoice;
  // An unknown name fell through to node-llama-cpp, which quietly ran on the CPU.
  if (!LLAMA_GPUS.includes(llamaGpu)) throw bad('llama-gpu', `one of ${LLAMA_GPUS.join(', ')}`, llamaGpu);
  const resultsDir = outDir(v);
  const dtypes = (v.dtypes as string).split(',') as GgufDtype[];
  if (dtypes.some((d) => d !== 'f16' && d !== 'f32'))
    throw new AutoGlmError('invalid_request', '--dtypes takes f32 and/or f16', { param: 'dtypes' });
  const { results, written } = await runCompare({
    modelDir: modelDir(v.model as string)!,
    dtypes,
    prompts: (v.prompt as string[] | undefined) ?? [
      'Tell me a story about a cat.',
      'Tell me a story about Lily.',
      'What is the capital of France?',
    ],
    maxTokens: integer(v['max-tokens'] as string, 'max-tokens')!,
    prefillTokens: integer(v['prefill-tokens'] as string, 'prefill-tokens')!,
    repeats: integer(v.repeats as string, 'repeats')!,
    llamaGpu,
    llamaThreads: integer(v['llama-threads'] as string | undefined, 'llama-threads'),
    resultsDir,
    argv: ['bench', ...fullArgv],
  });
  for (const c of results.comparisons) {
    const peer = c.llamaCpp;
    process.stdout.write(
      `${c.dtype}: ours prefill ${num(c.ours.prefillTokensPerS)} tok/s, decode ${num(c.ours.decodeTokensPerS)} tok/s` +
        (peer
          ? ` | llama.cpp (${peer.backend}) prefill ${num(peer.prefillTokensPerS)} tok/s, decode ${num(peer.decodeTokensPerS)} tok/s` +
            ` | greedy agreement ${c.agreement!.map((a) => `${a.matchingPrefix}/${a.total}`).join(', ')}`
          : ' | llama.cpp skipped') +
        '\n',
    );
  }
  if (written) process.stdout.write(`wrote ${written.jsonPath} and ${written.markdownPath}\n`);
}
