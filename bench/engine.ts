/**
 * `npm run bench:engine`: the ~100M-parameter generated Llama on this adapter: load time,
 * prefill tokens/s at 128 and 512 prompt tokens, decode tokens/s, and decode as a fraction
 * of its bandwidth bound (weight bytes per token over the read bandwidth measured in the
 * same run by the kernel benchmark's ceiling kernel).
 *
 * `npm run bench:engine -- --weight-dtypes=f16,int8 [--model=DIR] [--rounds=5]`: instead,
 * one engine per weight dtype (EngineOptions.weightDType) on the same model (default the
 * generated 100M one), their decode and prefill timed in alternation so that both see the
 * same machine load; prints each dtype's medians and its ratio to the first dtype's,
 * per round and overall, and writes bench/results/engine-weight-dtypes.json (not RESULTS.md).
 *
 * `npm run bench:engine -- --fold-norms [--streams=16] [--rounds=5]`: the same interleaved
 * comparison between RMSNorms folded into the matmuls (EngineOptions.foldNorms, the
 * default) and run as dispatches of their own, with a --streams-wide batched decode as well;
 * writes bench/results/engine-fold-norms.json.
 *
 * `npm run bench:engine -- --architectures=llama,gemma2,gemma3_text [--streams=16] [--rounds=5]`:
 * the same interleaved comparison between architectures, each on the generated 100M shape
 * (what Gemma's sandwich norms, which cannot fold into the matmuls, and soft-capping cost
 * against Llama); writes bench/results/engine-architectures.json.
 *
 * `npm run bench:engine -- --prompt-scoring [--model=DIR] [--prompt=400] [--rounds=5]`: what
 * prompt logprobs (echo with logprobs, prompt_logprobs) cost: a fresh --prompt-token prompt
 * prefilled plainly and one scored (promptLogprobs), alternating round by round, medians
 * and the per-round ratio; writes bench/results/engine-prompt-scoring.json.
 *
 * `npm run bench:engine -- --speculative[=4] [--model=DIR] [--rounds=5]`: speculative
 * decoding by prompt lookup (EngineOptions.speculativeTokens) against plain decoding, two
 * engines on the same model (default models/demo-stories, a trained one: random weights say
 * nothing about how often guesses come true), alternating round by round over three
 * workloads: a copy (the model's own answer P -> T is in the context, P + T + P, and it
 * answers again), the first answer alone (only its own repetitions to draw on), and the copy
 * sampled at temperature 0.8 with a seed, and the answer shown as JSON and asked for under a
 * json_object response_format (extraction). Output tokens/s of each, the per-round speedup,
 * the drafts' acceptance, and a check that both engines' outputs are identical; writes
 * bench/results/engine-speculative.json.
 *
 * `npm run bench:engine -- --priority [--model=DIR] [--rounds=4]`: what priority scheduling
 * (EngineOptions.schedulingPolicy 'priority') buys a request behind a queue: an engine of 4
 * batch slots busy with 12 sampled 120-token requests at priority 1, and a probe request
 * arriving 150 ms later at priority -1 (ahead of the queue) or 1 (behind it), alternating;
 * the probe's time to first token; writes bench/results/engine-priority.json.
 *
 * `npm run bench:engine -- --lora[=4] [--rank=16] [--model=DIR] [--rounds=5] [--lora-targets=q_proj,v_proj]`: what LoRA
 * adapters (EngineOptions.loraAdapters, generated PEFT adapters on every projection) cost:
 * one engine with N adapters; decode of one stream on the base model and on an adapter,
 * 16 streams on the base model and 16 spread over the N adapters, and a 128-token prefill
 * on each, interleaved round by round; medians and per-round ratios to the base model; then
 * the time engine.loadLora takes to put one more adapter into a free slot; writes
 * bench/results/engine-lora.json.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../src/engine/engine.js';
import { loadModelSpec } from '../src/engine/model/config.js';
import { SUPPORTED_ARCHITECTURES, type Architecture } from '../src/engine/model/model-spec.js';
import { generateLoraAdapter } from '../src/testing/generate-lora.js';
import type { LoraModule } from '../src/engine/lora/peft-adapter.js';
import { ensureGeneratedModel } from '../src/testing/generate-model.js';
import { WEIGHT_DTYPE_OPTIONS, type EngineOptions, type GenerateRequest, type WeightDTypeOption } from '../src/engine/types.js';
import { measureCeilings } from './ceilings.js';
import { loadBenchEngine, randomPrompt, timedGenerate } from './engine-load.js';
import { formatTable, markdownTable, median, runStamp, updateResultsSection, writeResultsJson } from './report.js';

const REPEATS = 3;

function flag(name: string): string | undefined {
  return process.argv
    .slice(2)
    .find((a) => a.startsWith(`--${name}=`))
    ?.slice(name.length + 3);
}

/** --name=N as a positive integer (the default when absent); anything else stops the run with a message. */
function countFlag(name: string, fallback: number): number {
  const raw = flag(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} takes a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** Writes bench/results/NAME.json: the adapter, date and commit of the run, then `fields`; says where. */
function writeStampedJson(name: string, adapter: string, fields: Record<string, unknown>): void {
  const { commit, date } = runStamp();
  console.log(`wrote ${writeResultsJson(name, { adapter, date, commit, ...fields })}`);
}

/** One engine of an interleaved comparison: a label and the options (or model) that make it differ. */
interface EngineVariant {
  label: string;
  options: EngineOptions;
  /** This variant's model (default: the comparison's). */
  modelDir?: string;
}

/**
 * --architectures: the generated 100M shape as each architecture, with the real models'
 * settings where the test generator picks small ones to exercise them (Gemma 2's caps of 50
 * and 30, query_pre_attn_scalar = head_dim, Gemma 3's one global layer in six); windows of
 * 512, longer than the bench's sequences, so that attention does the same work everywhere.
 * qwen3_moe: 8 experts of 512 with 4 per token, the dense MLP's 2048 active per token;
 * qwen2_moe and glm4_moe: 8 experts of 512 with 3 per token plus a shared expert of 512,
 * the same 2048 active (glm4_moe's first layer dense, as GLM-4.5-Air's).
 */
async function architectureVariants(list: string): Promise<EngineVariant[]> {
  const variants: EngineVariant[] = [];
  for (const name of list.split(',')) {
    if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(name)) {
      throw new Error(`--architectures takes ${SUPPORTED_ARCHITECTURES.join(', ')}; got ${JSON.stringify(name)}`);
    }
    const architecture = name as Architecture;
    const gemma = architecture === 'gemma2' || architecture === 'gemma3_text';
    const settings = gemma
      ? {
          slidingWindow: 512,
          slidingWindowPattern: architecture === 'gemma2' ? 2 : 6,
          queryPreAttnScalar: 64,
          attnSoftcap: 50,
          finalSoftcap: 30,
        }
      : architecture === 'qwen3_moe'
        ? // as many active MLP weights per token as the dense shape (4 x 512 = its 2048), 4x in all
          { experts: 8, expertsPerToken: 4, expertIntermediate: 512 }
        : architecture === 'qwen2_moe' || architecture === 'glm4_moe'
          ? // 3 routed and the shared expert: 4 x 512 active again
            { experts: 8, expertsPerToken: 3, expertIntermediate: 512, sharedExpertIntermediate: 512 }
          : {};
    variants.push({ label: name, options: {}, modelDir: await ensureGeneratedModel('100m', { architecture, seed: 1, ...settings }) });
  }
  return variants;
}

/**
 * Decode (64 tokens after a 16-token prompt, one stream; and with --streams=N, N streams at
 * once) and prefill (128 tokens) per engine variant, interleaved round by round so that all
 * see the same machine load.
 */
async function compareEngines(
  variants: EngineVariant[],
  modelDir: string | undefined,
  rounds: number,
  streams: number,
  jsonName: string,
): Promise<void> {
  const engines: { label: string; engine: Engine }[] = [];
  try {
    for (const { label, options, modelDir: own } of variants) {
      const dir = own ?? modelDir;
      const engine = dir ? await Engine.load(dir, { ...options, responseCacheEntries: 0 }) : (await loadBenchEngine(options)).engine;
      engines.push({ label, engine });
    }
    const vocab = engines[0]!.engine.folder.spec.vocabSize;
    const model = variants.some((v) => v.modelDir) ? 'generated 100M shape per architecture' : (modelDir ?? 'generated 100M llama');
    console.error(`adapter: ${engines[0]!.engine.adapterName}; model: ${model}`);
    for (const { engine } of engines) {
      await timedGenerate(engine, { prompt: randomPrompt(32, vocab, 999), maxTokens: 4, ignoreEos: true, sampling: { temperature: 0 } });
      await timedGenerate(engine, { prompt: randomPrompt(128, vocab, 998), maxTokens: 1, sampling: { temperature: 0 } });
    }
    const tpot = engines.map(() => [] as number[]);
    const batchTpot = engines.map(() => [] as number[]);
    const ttft = engines.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < engines.length; i++) {
        const engine = engines[i]!.engine;
        const d = await timedGenerate(engine, {
          prompt: randomPrompt(16, vocab, 77 + r),
          maxTokens: 64,
          ignoreEos: true,
          sampling: { temperature: 0 },
        });
        tpot[i]!.push(d.tpotMs);
        if (streams > 1) {
          const all = await Promise.all(
            Array.from({ length: streams }, (_, j) =>
              timedGenerate(engine, {
                prompt: randomPrompt(16, vocab, 5000 + 100 * r + j),
                maxTokens: 64,
                ignoreEos: true,
                sampling: { temperature: 0 },
              }),
            ),
          );
          batchTpot[i]!.push(median(all.map((t) => t.tpotMs)));
        }
        const p = await timedGenerate(engine, { prompt: randomPrompt(128, vocab, 1280 + r), maxTokens: 1, sampling: { temperature: 0 } });
        ttft[i]!.push(p.ttftMs);
      }
    }
    const ratio = (xs: number[][], i: number): number => median(xs[i]!.map((v, r) => v / xs[0]![r]!));
    const batched = (i: number): string[] =>
      streams > 1 ? [`${median(batchTpot[i]!).toFixed(2)} ms`, `${ratio(batchTpot, i).toFixed(2)}x`] : [];
    const rows = engines.map(({ label, engine }, i) => [
      label,
      `${(engine.weightBytes / 1e6).toFixed(1)} MB`,
      `${median(tpot[i]!).toFixed(2)} ms`,
      `${ratio(tpot, i).toFixed(2)}x`,
      tpot[i]!.map((v) => v.toFixed(1)).join(' '),
      ...batched(i),
      `${(128 / (median(ttft[i]!) / 1000)).toFixed(0)} tok/s`,
      `${ratio(ttft, i).toFixed(2)}x`,
    ]);
    const headers = [
      'engine',
      'weight bytes / token',
      'decode ms/token',
      'vs first',
      'per round',
      ...(streams > 1 ? [`decode ms/token, ${streams} streams`, 'vs first'] : []),
      'prefill 128',
      'prefill time vs first',
    ];
    console.log(formatTable(headers, rows));
    writeStampedJson(jsonName, engines[0]!.engine.adapterName, {
      model,
      rounds,
      streams,
      engines: engines.map(({ label, engine }, i) => ({
        label,
        weightBytes: engine.weightBytes,
        tpotMs: tpot[i],
        batchTpotMs: batchTpot[i],
        prefill128Ms: ttft[i],
      })),
    });
  } finally {
    for (const { engine } of engines) await engine.close();
  }
}

/** Plain and scored prefill of fresh prompts (never a prefix-cache hit), alternating. */
async function comparePromptScoring(modelDir: string | undefined, promptTokens: number, rounds: number): Promise<void> {
  const engine = modelDir ? await Engine.load(modelDir, { responseCacheEntries: 0 }) : (await loadBenchEngine()).engine;
  try {
    const vocab = engine.folder.spec.vocabSize;
    const model = modelDir ?? 'generated 100M llama';
    console.error(`adapter: ${engine.adapterName}; model: ${model}; ${promptTokens}-token prompts`);
    // compiles both paths' kernels first
    for (const promptLogprobs of [undefined, 1]) {
      await timedGenerate(engine, {
        prompt: randomPrompt(promptTokens, vocab, 31),
        maxTokens: 1,
        sampling: { temperature: 0 },
        promptLogprobs,
      });
    }
    const plain: number[] = [];
    const scored: number[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const [times, promptLogprobs] of [
        [plain, undefined],
        [scored, 1],
      ] as const) {
        const seed = 4000 + 2 * r + (promptLogprobs ?? 0);
        const t = await timedGenerate(engine, {
          prompt: randomPrompt(promptTokens, vocab, seed),
          maxTokens: 1,
          sampling: { temperature: 0 },
          promptLogprobs,
        });
        times.push(t.ttftMs);
      }
    }
    const ratios = scored.map((s, r) => s / plain[r]!);
    console.log(
      formatTable(
        ['prompt', 'plain prefill ms', 'scored ms', 'scored / plain (median of rounds)', 'per round'],
        [
          [
            `${promptTokens}`,
            median(plain).toFixed(1),
            median(scored).toFixed(1),
            `${median(ratios).toFixed(2)}x`,
            ratios.map((x) => x.toFixed(2)).join(' '),
          ],
        ],
      ),
    );
    writeStampedJson('engine-prompt-scoring', engine.adapterName, {
      model,
      promptTokens,
      rounds,
      plainMs: plain,
      scoredMs: scored,
    });
  } finally {
    await engine.close();
  }
}

interface SpeculativeWorkload {
  label: string;
  request: GenerateRequest;
}

/** Plain and speculative decoding of the same requests, alternating engines round by round. */
async function compareSpeculative(modelDir: string, numTokens: number, rounds: number): Promise<void> {
  const plain = await Engine.load(modelDir, { responseCacheEntries: 0 });
  const spec = await Engine.load(modelDir, { responseCacheEntries: 0, speculativeTokens: numTokens });
  try {
    await Promise.all([plain.warmUp(), spec.warmUp()]);
    const maxTokens = 96;
    // a chat request where the model has a template; random tokens where it has none
    const ask = await plain
      .tokenize([{ role: 'user', content: 'Tell me a story about Lily.' }])
      .catch(() => randomPrompt(16, plain.folder.spec.vocabSize, 77));
    const first = await plain.complete({ prompt: ask, maxTokens, sampling: { temperature: 0 } });
    const copy = [...ask, ...first.tokenIds, ...ask];
    // the answer shown as JSON, and asked for as JSON: extraction under a grammar
    const shownAsJson = await plain.tokenize(JSON.stringify({ answer: first.text }));
    const eos = plain.folder.eosTokenIds.slice(0, 1);
    const jsonCopy = [...ask, ...shownAsJson, ...eos, ...ask];
    const workloads: SpeculativeWorkload[] = [
      { label: 'copy (P T P), greedy', request: { prompt: copy, maxTokens, sampling: { temperature: 0 } } },
      { label: 'first answer (P), greedy', request: { prompt: ask, maxTokens, sampling: { temperature: 0 } } },
      { label: 'copy (P T P), T 0.8 seeded', request: { prompt: copy, maxTokens, sampling: { temperature: 0.8, seed: 9 } } },
      {
        label: 'JSON copy (P J P), json_object, greedy',
        request: { prompt: jsonCopy, maxTokens, sampling: { temperature: 0 }, responseFormat: { type: 'json_object' } },
      },
    ];
    const model = modelDir;
    console.error(`adapter: ${plain.adapterName}; model: ${model}; ${numTokens} speculative tokens; ${maxTokens} output tokens`);
    const results = workloads.map(() => ({
      plainMs: [] as number[],
      specMs: [] as number[],
      tokens: 0,
      drafts: 0,
      draftTokens: 0,
      accepted: 0,
      identical: true,
    }));
    for (let r = 0; r < rounds; r++) {
      for (const [w, workload] of workloads.entries()) {
        const res = results[w]!;
        const order = r % 2 === 0 ? [plain, spec] : [spec, plain];
        const texts = new Map<Engine, number[]>();
        for (const engine of order) {
          const before = engine.stats();
          const t0 = performance.now();
          const out = await engine.complete(workload.request);
          const ms = performance.now() - t0;
          const after = engine.stats();
          texts.set(engine, out.tokenIds);
          if (engine === plain) res.plainMs.push(ms);
          else {
            res.specMs.push(ms);
            res.tokens = out.tokenIds.length;
            res.drafts += after.specDecodeDrafts - before.specDecodeDrafts;
            res.draftTokens += after.specDecodeDraftTokens - before.specDecodeDraftTokens;
            res.accepted += after.specDecodeAcceptedTokens - before.specDecodeAcceptedTokens;
          }
        }
        if (JSON.stringify(texts.get(plain)) !== JSON.stringify(texts.get(spec))) res.identical = false;
      }
    }
    const rows = workloads.map((w, i) => {
      const res = results[i]!;
      const speedups = res.specMs.map((ms, r) => res.plainMs[r]! / ms);
      return [
        w.label,
        `${res.tokens}`,
        ((res.tokens / median(res.plainMs)) * 1000).toFixed(1),
        ((res.tokens / median(res.specMs)) * 1000).toFixed(1),
        `${median(speedups).toFixed(2)}x`,
        speedups.map((x) => x.toFixed(2)).join(' '),
        (res.drafts / rounds).toFixed(1),
        res.drafts > 0 ? (res.draftTokens / res.drafts).toFixed(2) : '-',
        res.draftTokens > 0 ? `${((100 * res.accepted) / res.draftTokens).toFixed(0)}%` : '-',
        (res.accepted / rounds).toFixed(1),
        res.identical ? 'yes' : 'NO',
      ];
    });
    const header = [
      'workload',
      'tokens',
      'plain tok/s',
      'speculative tok/s',
      'speedup (median of rounds)',
      'per round',
      'draft steps per request',
      'drafts per draft step',
      'drafts kept',
      'kept per request',
      'identical output',
    ];
    console.log(formatTable(header, rows));
    writeStampedJson('engine-speculative', plain.adapterName, {
      model,
      speculativeTokens: numTokens,
      rounds,
      workloads: workloads.map((w, i) => ({ label: w.label, ...results[i]! })),
    });
    if (results.some((r) => !r.identical)) process.exitCode = 1;
  } finally {
    await Promise.all([plain.close(), spec.close()]);
  }
}

/** A probe's time to first token behind a busy queue, at a priority ahead of it and at the queue's own. */
async function comparePriority(modelDir: string, rounds: number): Promise<void> {
  const engine = await Engine.load(modelDir, { schedulingPolicy: 'priority', maxBatchSequences: 4, responseCacheEntries: 0 });
  try {
    await engine.warmUp();
    console.error(`adapter: ${engine.adapterName}; model: ${modelDir}; 4 batch slots, 12 queued requests of 120 tokens at priority 1`);
    const probe = async (priority: number): Promise<number> => {
      const queue = Array.from({ length: 12 }, (_, i) =>
        engine.complete({
          prompt: `Story ${i}: Once`,
          maxTokens: 120,
          ignoreEos: true,
          priority: 1,
          sampling: { temperature: 0.8, seed: i },
        }),
      );
      await new Promise((r) => setTimeout(r, 150));
      const t = await timedGenerate(engine, { prompt: 'Probe: Once', maxTokens: 8, priority });
      await Promise.all(queue);
      return t.ttftMs;
    };
    const ahead: number[] = [];
    const behind: number[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const priority of r % 2 === 0 ? [1, -1] : [-1, 1]) (priority < 0 ? ahead : behind).push(await probe(priority));
    }
    const row = (label: string, ms: number[]): string[] => [label, median(ms).toFixed(0), ms.map((x) => x.toFixed(0)).join(' ')];
    console.log(
      formatTable(
        ['probe', 'TTFT median ms', 'per round'],
        [row('priority -1 (ahead of the queue)', ahead), row('priority 1 (the queue’s own)', behind)],
      ),
    );
    writeStampedJson('engine-priority', engine.adapterName, {
      model: modelDir,
      rounds,
      aheadMs: ahead,
      behindMs: behind,
    });
  } finally {
    await engine.close();
  }
}

/** Decode and prefill on the base model against the same on LoRA adapters, one engine, interleaved. */
async function compareLora(
  modelDir: string | undefined,
  adapterCount: number,
  rank: number,
  rounds: number,
  targetModules: LoraModule[] | undefined,
): Promise<void> {
  const dir = modelDir ?? (await ensureGeneratedModel('100m', { architecture: 'llama', seed: 1 }));
  const spec = await loadModelSpec(dir);
  const adapterRoot = await mkdtemp(join(tmpdir(), 'autoglm-bench-lora-'));
  const loraAdapters = [];
  for (let i = 0; i < adapterCount; i++) {
    const path = join(adapterRoot, `a${i}`);
    await generateLoraAdapter(path, spec, { rank, seed: 100 + i, ...(targetModules ? { targetModules } : {}) });
    loraAdapters.push({ name: `lora-${i}`, path });
  }
  // one more slot, for the run-time load timed at the end (a bf16 file, as PEFT saves for a bf16 base)
  const extra = join(adapterRoot, 'extra');
  await generateLoraAdapter(extra, spec, { rank, seed: 99, dtype: 'bf16', ...(targetModules ? { targetModules } : {}) });
  const engine = await Engine.load(dir, { responseCacheEntries: 0, loraAdapters, maxLoras: adapterCount + 1 });
  try {
    await engine.warmUp();
    const vocab = spec.vocabSize;
    const streams = 16;
    const model = modelDir ?? 'generated 100M llama';
    const on = targetModules ? targetModules.join(', ') : 'every projection';
    console.error(`adapter: ${engine.adapterName}; model: ${model}; ${adapterCount} LoRA adapters of rank ${rank} on ${on}`);
    const decode = (lora: string | undefined, seed: number) =>
      timedGenerate(engine, {
        prompt: randomPrompt(16, vocab, seed),
        maxTokens: 64,
        ignoreEos: true,
        sampling: { temperature: 0 },
        ...(lora ? { lora } : {}),
      });
    const batch = async (loraOf: (j: number) => string | undefined, seed: number): Promise<number> =>
      median((await Promise.all(Array.from({ length: streams }, (_, j) => decode(loraOf(j), seed + j)))).map((t) => t.tpotMs));
    const prefill = async (lora: string | undefined, seed: number): Promise<number> =>
      (await timedGenerate(engine, { prompt: randomPrompt(128, vocab, seed), maxTokens: 1, ...(lora ? { lora } : {}) })).ttftMs;
    const names = loraAdapters.map((a) => a.name);
    const workloads: { label: string; run: (r: number) => Promise<number>; base?: number }[] = [
      { label: 'decode, 1 stream, base model', run: (r) => decode(undefined, 77 + r).then((t) => t.tpotMs) },
      { label: 'decode, 1 stream, one adapter', run: (r) => decode(names[0], 77 + r).then((t) => t.tpotMs), base: 0 },
      { label: `decode, ${streams} streams, base model`, run: (r) => batch(() => undefined, 5000 + 100 * r) },
      {
        label: `decode, ${streams} streams over ${adapterCount} adapters`,
        run: (r) => batch((j) => names[j % names.length], 5000 + 100 * r),
        base: 2,
      },
      { label: 'prefill 128, base model', run: (r) => prefill(undefined, 1280 + r) },
      { label: 'prefill 128, one adapter', run: (r) => prefill(names[0], 1280 + r), base: 4 },
    ];
    const ms = workloads.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) {
      // base and adapter of each pair alternate which goes first
      for (let w = 0; w < workloads.length; w += 2) {
        for (const i of r % 2 === 0 ? [w, w + 1] : [w + 1, w]) ms[i]!.push(await workloads[i]!.run(r));
      }
    }
    const rows = workloads.map((w, i) => {
      const ratios = w.base === undefined ? [] : ms[i]!.map((v, r) => v / ms[w.base!]![r]!);
      return [
        w.label,
        `${median(ms[i]!).toFixed(2)} ms`,
        w.base === undefined ? '1.00x' : `${median(ratios).toFixed(2)}x`,
        ratios.map((x) => x.toFixed(2)).join(' '),
      ];
    });
    console.log(formatTable(['workload', 'ms (decode: per token; prefill: to first token)', 'vs base model', 'per round'], rows));
    // loadLora into the free slot (read, slot writes, GEMM copies) with the engine idle, then unload
    const loadMs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      await engine.loadLora('extra', extra);
      loadMs.push(performance.now() - t0);
      engine.unloadLora('extra');
    }
    console.log(
      `loadLora of a rank-${rank} bf16 adapter: median ${median(loadMs).toFixed(0)} ms (${loadMs.map((v) => v.toFixed(0)).join(' ')})`,
    );
    writeStampedJson('engine-lora', engine.adapterName, {
      model,
      adapters: adapterCount,
      rank,
      targetModules: targetModules ?? 'all',
      rounds,
      workloads: workloads.map((w, i) => ({ label: w.label, ms: ms[i] })),
      loadLoraMs: loadMs,
    });
  } finally {
    await engine.close();
    await rm(adapterRoot, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const lora = process.argv.slice(2).find((a) => a === '--lora' || a.startsWith('--lora='));
  if (lora !== undefined)
    return compareLora(
      flag('model'),
      lora.includes('=') ? countFlag('lora', 4) : 4,
      countFlag('rank', 16),
      countFlag('rounds', 5),
      flag('lora-targets')?.split(',') as LoraModule[] | undefined,
    );
  if (process.argv.includes('--priority')) return comparePriority(flag('model') ?? 'models/demo-stories', countFlag('rounds', 4));
  const speculative = process.argv.slice(2).find((a) => a === '--speculative' || a.startsWith('--speculative='));
  if (speculative !== undefined)
    return compareSpeculative(
      flag('model') ?? 'models/demo-stories',
      speculative.includes('=') ? countFlag('speculative', 4) : 4,
      countFlag('rounds', 5),
    );
  if (process.argv.includes('--prompt-scoring'))
    return comparePromptScoring(flag('model'), countFlag('prompt', 400), countFlag('rounds', 5));
  const dtypes = flag('weight-dtypes');
  if (dtypes !== undefined) {
    const list = dtypes.split(',') as WeightDTypeOption[];
    if (list.some((d) => !WEIGHT_DTYPE_OPTIONS.includes(d))) throw new Error(`--weight-dtypes takes ${WEIGHT_DTYPE_OPTIONS.join(', ')}`);
    const variants = list.map((dtype) => ({ label: dtype, options: { weightDType: dtype } }));
    return compareEngines(variants, flag('model'), countFlag('rounds', 5), countFlag('streams', 1), 'engine-weight-dtypes');
  }
  const architectures = flag('architectures');
  if (architectures !== undefined)
    return compareEngines(
      await architectureVariants(architectures),
      undefined,
      countFlag('rounds', 5),
      countFlag('streams', 16),
      'engine-architectures',
    );
  if (process.argv.includes('--fold-norms')) {
    const variants = [
      { label: 'norms folded into the matmuls', options: { foldNorms: true } },
      { label: 'norms as dispatches of their own', options: { foldNorms: false } },
    ];
    return compareEngines(variants, flag('model'), countFlag('rounds', 5), countFlag('streams', 16), 'engine-fold-norms');
  }
  const { engine, loadMs, generateMs } = await loadBenchEngine();
  const vocab = 16384;
  try {
    console.error(
      `adapter: ${engine.adapterName}; model generated in ${(generateMs / 1000).toFixed(1)} s, loaded in ${(loadMs / 1000).toFixed(1)} s`,
    );
    // warm-up: compiles every pipeline
    await timedGenerate(engine, { prompt: randomPrompt(32, vocab, 999), maxTokens: 4, ignoreEos: true, sampling: { temperature: 0 } });

    const prefill: Record<number, number> = {};
    for (const n of [128, 512]) {
      const times = [];
      for (let r = 0; r < REPEATS; r++) {
        const t = await timedGenerate(engine, { prompt: randomPrompt(n, vocab, n * 10 + r), maxTokens: 1, sampling: { temperature: 0 } });
        times.push(t.ttftMs);
      }
      prefill[n] = n / (median(times) / 1000);
    }

    const decodeRuns = [];
    for (let r = 0; r < REPEATS; r++) {
      decodeRuns.push(
        await timedGenerate(engine, {
          prompt: randomPrompt(16, vocab, 77 + r),
          maxTokens: 64,
          ignoreEos: true,
          sampling: { temperature: 0 },
        }),
      );
    }
    const tpotMs = median(decodeRuns.map((d) => d.tpotMs));
    const decodeTps = 1000 / tpotMs;

    const ceilings = await measureCeilings(engine.rt);
    const boundTps = (ceilings.readGBps * 1e9) / engine.weightBytes;
    const fraction = decodeTps / boundTps;

    const rows = [
      ['load', `${(loadMs / 1000).toFixed(2)} s`],
      ['prefill 128', `${prefill[128]!.toFixed(1)} tok/s`],
      ['prefill 512', `${prefill[512]!.toFixed(1)} tok/s`],
      ['decode (batch 1)', `${decodeTps.toFixed(2)} tok/s (${tpotMs.toFixed(1)} ms/token)`],
      ['weight bytes / token', `${(engine.weightBytes / 1e6).toFixed(1)} MB`],
      ['read bandwidth (same run)', `${ceilings.readGBps.toFixed(2)} GB/s`],
      ['bandwidth bound', `${boundTps.toFixed(2)} tok/s`],
      ['decode / bound', `${(fraction * 100).toFixed(0)}%`],
    ];
    console.log(formatTable(['measure', 'value'], rows));
    const { commit, date } = runStamp();
    writeResultsJson('engine', {
      adapter: engine.adapterName,
      date,
      commit,
      model: '100m llama (generated, f16 weights)',
      loadMs,
      prefill,
      decodeTps,
      tpotMs,
      ceilings,
      weightBytes: engine.weightBytes,
      fraction,
    });
    updateResultsSection(
      'engine',
      `## Engine (single sequence)\n\nAdapter: ${engine.adapterName}. Model: generated ~100M Llama (12 layers, hidden 768, vocab 16384), f16 weights. Date: ${date}, commit ${commit}. Command: \`npm run bench:engine\`.\n\n` +
        markdownTable(['measure', 'value'], rows) +
        `\n\nDecode target on lavapipe: >= 60% of the bandwidth bound.`,
    );
  } finally {
    await engine.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
