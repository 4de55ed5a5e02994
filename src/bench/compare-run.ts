/**
 * `autoglm bench compare`: the same weights through our engine and through llama.cpp
 * (node-llama-cpp, optional), in one run: the model is exported to GGUF in f32 and f16,
 * the same token-id prompts are run greedily through both, and the report gives prefill
 * and decode tokens/s of each and whether their greedy tokens agree (an independent check
 * of our llama forward pass). Without node-llama-cpp it says so and measures ours only.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../engine/engine.js';
import { loadModelSpec, parameterCount } from '../engine/model/index.js';
import { AutoGlmError } from '../errors.js';
import { adapterMetadata } from './adapter-info.js';
import { exportGguf, ggufUnsupportedReasons, type GgufDtype } from './gguf-export.js';
import { loadNodeLlamaCpp, openLlamaCppPeer, timings, type LlamaGpuChoice, type PeerTimings } from './llama-cpp.js';
import { metadataSection, num, table } from './markdown.js';
import { SeededRandom } from './random.js';
import { modelShape, runMetadata, writeRun, type AdapterMetadata, type RunMetadata, type WrittenRun } from './run-metadata.js';
import { kvBytesPerToken } from './sizing.js';
import { medianAndSpread } from './stats.js';
import { barChart } from './svg-chart.js';

export interface CompareOptions {
  modelDir: string;
  dtypes: GgufDtype[];
  /** Chat prompts run for greedy agreement (chat template applied by our tokenizer). */
  prompts: string[];
  /** Tokens generated per prompt. */
  maxTokens: number;
  /** Length of the random-token prompt timed for prefill. */
  prefillTokens: number;
  repeats: number;
  llamaGpu: LlamaGpuChoice;
  /**
   * llama.cpp CPU threads (default: node-llama-cpp's choice, all cores). Its threads spin
   * while waiting, so on a busy or small machine fewer threads can be far faster.
   */
  llamaThreads?: number;
  resultsDir?: string;
  argv?: string[];
  log?: (line: string) => void;
}

export interface SideResult {
  prefillTokensPerS: number;
  prefillSpread: number;
  decodeTokensPerS: number;
  decodeSpread: number;
  greedy: number[][];
}

export interface DtypeComparison {
  dtype: GgufDtype;
  ours: SideResult;
  llamaCpp: (SideResult & { backend: string; ggufBytes: number }) | null;
  /** Per prompt: tokens equal from the start, out of maxTokens; null without a peer. */
  agreement: { prompt: string; matchingPrefix: number; total: number; identical: boolean }[] | null;
  /** ours / llama.cpp. */
  prefillRatio: number | null;
  decodeRatio: number | null;
}

export interface CompareResults {
  peerAvailable: boolean;
  peerReason: string | null;
  comparisons: DtypeComparison[];
}

type Runner = (prompt: number[], maxTokens: number) => Promise<PeerTimings>;

async function measureSide(run: Runner, promptIds: number[][], prefillPrompt: number[], o: CompareOptions): Promise<SideResult> {
  await run(prefillPrompt.slice(0, 8), 4); // warm-up
  const prefill: number[] = [];
  const decode: number[] = [];
  for (let r = 0; r < o.repeats; r++) {
    prefill.push((await run(prefillPrompt, 1)).prefillTokensPerS);
    decode.push((await run(prefillPrompt.slice(0, 16), Math.max(o.maxTokens, 16))).decodeTokensPerS);
  }
  const greedy: number[][] = [];
  for (const p of promptIds) greedy.push((await run(p, o.maxTokens)).tokens);
  const pf = medianAndSpread(prefill);
  const dc = medianAndSpread(decode);
  return { prefillTokensPerS: pf.median, prefillSpread: pf.spread, decodeTokensPerS: dc.median, decodeSpread: dc.spread, greedy };
}

function engineRunner(engine: Engine): Runner {
  return async (prompt, maxTokens) => {
    const times: number[] = [];
    const tokens: number[] = [];
    const start = performance.now();
    for await (const ev of engine.generate({ prompt, maxTokens, ignoreEos: true, sampling: { temperature: 0 } })) {
      times.push(performance.now());
      tokens.push(ev.tokenId);
    }
    return timings(prompt.length, start, times, tokens);
  };
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

export async function runCompare(o: CompareOptions): Promise<{ results: CompareResults; written: WrittenRun | null; meta: RunMetadata }> {
  const log = o.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const spec = await loadModelSpec(o.modelDir);
  const unsupported = ggufUnsupportedReasons(spec);
  if (unsupported.length > 0)
    throw new AutoGlmError('unsupported_architecture', `bench compare needs a plain llama model: ${unsupported.join(', ')}`);
  const peer = await loadNodeLlamaCpp();
  if (!peer.mod) log(`llama.cpp side skipped: ${peer.reason}`);
  const contextTokens = Math.min(spec.contextLength, Math.max(o.prefillTokens, 64) + o.maxTokens + 32);
  const prefillTokens = Math.min(o.prefillTokens, spec.contextLength - o.maxTokens - 8);
  const rng = new SeededRandom(7);
  const prefillPrompt = Array.from({ length: prefillTokens }, () => rng.intBetween(0, spec.vocabSize - 1));
  const workDir = await mkdtemp(join(tmpdir(), 'autoglm-compare-'));
  const comparisons: DtypeComparison[] = [];
  let adapter: AdapterMetadata | null = null;
  try {
    for (const dtype of o.dtypes) {
      log(`[${dtype}] our engine ...`);
      const engine = await Engine.load(o.modelDir, {
        forceF32: dtype === 'f32',
        maxBatchSequences: 1,
        maxContextTokens: contextTokens,
        // explicit, with slack: the engine's default floors a context that is not a block multiple
        kvCacheBytes: kvBytesPerToken(spec, dtype) * (contextTokens + 32),
        responseCacheEntries: 0,
      });
      let ours: SideResult;
      let promptIds: number[][];
      try {
        adapter = adapterMetadata(engine.rt);
        if (dtype === 'f16' && !adapter.f16) {
          log('[f16] skipped: the adapter has no shader-f16');
          continue;
        }
        promptIds = await Promise.all(o.prompts.map((p) => engine.tokenize([{ role: 'user', content: p }])));
        ours = await measureSide(engineRunner(engine), promptIds, prefillPrompt, o);
      } finally {
        await engine.close();
      }
      let llamaCpp: DtypeComparison['llamaCpp'] = null;
      if (peer.mod) {
        const gguf = join(workDir, `model-${dtype}.gguf`);
        const exported = await exportGguf(o.modelDir, gguf, { dtype });
        log(`[${dtype}] llama.cpp on ${gguf} (${(exported.bytes / 2 ** 20).toFixed(1)} MiB) ...`);
        const p = await openLlamaCppPeer(gguf, { gpu: o.llamaGpu, contextTokens, threads: o.llamaThreads });
        try {
          const side = await measureSide((prompt, n) => p.generate(prompt, n), promptIds, prefillPrompt, o);
          llamaCpp = { ...side, backend: p.backend, ggufBytes: exported.bytes };
        } finally {
          await p.close();
        }
      }
      comparisons.push({
        dtype,
        ours,
        llamaCpp,
        agreement: llamaCpp
          ? o.prompts.map((prompt, i) => {
              const n = commonPrefix(ours.greedy[i]!, llamaCpp!.greedy[i]!);
              return { prompt, matchingPrefix: n, total: o.maxTokens, identical: n === o.maxTokens };
            })
          : null,
        prefillRatio: llamaCpp ? ours.prefillTokensPerS / llamaCpp.prefillTokensPerS : null,
        decodeRatio: llamaCpp ? ours.decodeTokensPerS / llamaCpp.decodeTokensPerS : null,
      });
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
  const results: CompareResults = { peerAvailable: peer.mod !== null, peerReason: peer.reason, comparisons };
  const meta = runMetadata({
    kind: 'compare',
    adapter,
    model: { ...modelShape(spec, parameterCount(spec)), source: o.modelDir },
    dtype: o.dtypes.join(','),
    argv: o.argv,
    notes: peer.mod ? [] : [`llama.cpp side skipped: ${peer.reason}`],
  });
  const written = o.resultsDir
    ? writeRun({
        dir: o.resultsDir,
        meta,
        results,
        charts: compareCharts(results),
        markdown: (files) => compareMarkdown(meta, results, o, files),
      })
    : null;
  return { results, written, meta };
}

export function compareCharts(r: CompareResults): Record<string, string> {
  if (!r.peerAvailable || r.comparisons.length === 0) return {};
  const groups = (pick: (s: SideResult) => number) =>
    r.comparisons.map((c) => ({
      label: c.dtype,
      values: [
        { name: 'Open-AutoGLM', value: pick(c.ours) },
        { name: 'llama.cpp', value: c.llamaCpp ? pick(c.llamaCpp) : Number.NaN },
      ],
    }));
  return {
    prefill: barChart({ title: 'Prefill tokens/s', yLabel: 'tokens/s', groups: groups((s) => s.prefillTokensPerS) }),
    decode: barChart({ title: 'Decode tokens/s (batch 1)', yLabel: 'tokens/s', groups: groups((s) => s.decodeTokensPerS) }),
  };
}

export function compareMarkdown(meta: RunMetadata, r: CompareResults, o: CompareOptions, files: Record<string, string>): string {
  const out = [
    '# Open-AutoGLM vs llama.cpp',
    '',
    metadataSection(meta),
    `- Prefill prompt: ${o.prefillTokens} random tokens; decode: batch 1, greedy; ${o.repeats} repeats (medians, spread = (max - min) / median); llama.cpp threads: ${o.llamaThreads ?? 'default'}`,
    '',
  ];
  if (!r.peerAvailable) out.push(`llama.cpp side skipped: ${r.peerReason}`, '');
  out.push(
    table(
      ['dtype', 'engine', 'backend', 'prefill tok/s', 'spread', 'decode tok/s', 'spread'],
      r.comparisons.flatMap((c) => [
        [
          c.dtype,
          'Open-AutoGLM',
          meta.adapter?.name ?? '-',
          num(c.ours.prefillTokensPerS),
          pct(c.ours.prefillSpread),
          num(c.ours.decodeTokensPerS),
          pct(c.ours.decodeSpread),
        ],
        ...(c.llamaCpp
          ? [
              [
                c.dtype,
                'llama.cpp',
                c.llamaCpp.backend,
                num(c.llamaCpp.prefillTokensPerS),
                pct(c.llamaCpp.prefillSpread),
                num(c.llamaCpp.decodeTokensPerS),
                pct(c.llamaCpp.decodeSpread),
              ],
            ]
          : []),
      ]),
    ),
    '',
  );
  for (const c of r.comparisons) {
    if (!c.agreement) continue;
    out.push(
      `### ${c.dtype}: ours / llama.cpp = ${num(c.prefillRatio)}x prefill, ${num(c.decodeRatio)}x decode; greedy agreement`,
      '',
      table(
        ['prompt', 'matching tokens', 'identical'],
        c.agreement.map((a) => [a.prompt, `${a.matchingPrefix}/${a.total}`, a.identical ? 'yes' : 'no']),
      ),
      '',
    );
  }
  for (const [name, file] of Object.entries(files)) out.push(`![${name}](${file})`, '');
  return out.join('\n');
}

function pct(v: number): string {
  return Number.isFinite(v) ? `${(v * 100).toFixed(0)}%` : '-';
}
