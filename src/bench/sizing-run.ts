/**
 * `autoglm bench sizing`: static sizing of a model for a memory budget, then (unless
 * static-only) decode curves measured on this adapter with the real engine, the largest
 * batch within a TPOT target, and a JSON + Markdown + SVG report in bench/results/.
 */
import { Engine } from '../engine/engine.js';
import { parameterCount } from '../engine/model/index.js';
import { adapterMetadata } from './adapter-info.js';
import { largestBatchWithin, measureDecodeCurves } from './decode-curves.js';
import { resolveModelSource } from './model-source.js';
import { progressBar } from './progress.js';
import { modelShape, runMetadata, writeRun, type WrittenRun } from './run-metadata.js';
import { kvBytesPerToken, staticSizing, type WeightDtype } from './sizing.js';
import { sizingCharts, sizingMarkdown, type SizingResults } from './sizing-report.js';

export interface SizingRunOptions {
  modelDir?: string;
  shape?: string;
  memoryBytes: number;
  dtype: WeightDtype;
  memoryUtilization?: number;
  bandwidthBytesPerS?: number;
  /** Static sizing contexts (default: powers of two up to the model's context). */
  sizingContexts?: number[];
  /** LoRA slots kept beside the weights (--max-loras, --max-lora-rank). */
  lora?: { slots: number; rank: number };
  tpotTargetMs?: number;
  /** Skip the engine measurements. */
  staticOnly?: boolean;
  batchSizes: number[];
  measureContexts: number[];
  decodeTokens?: number;
  repeats?: number;
  maxLayers?: number;
  /** Where the JSON and Markdown go; undefined (--no-report): print only. */
  resultsDir?: string;
  argv?: string[];
  log?: (line: string) => void;
}

export async function runSizing(o: SizingRunOptions): Promise<{ results: SizingResults; written: WrittenRun | undefined }> {
  const log = o.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const source = await resolveModelSource({
    modelDir: o.modelDir,
    shape: o.shape,
    measure: !o.staticOnly,
    // the generated checkpoint's dtype (int8 is quantized from it at load)
    dtype: o.dtype === 'int8' ? 'f16' : o.dtype,
    maxLayers: o.maxLayers,
  });
  const stat = staticSizing(source.fullSpec, {
    memoryBytes: o.memoryBytes,
    dtype: o.dtype,
    memoryUtilization: o.memoryUtilization,
    bandwidthBytesPerS: o.bandwidthBytesPerS,
    contextLengths: o.sizingContexts,
    ...(o.lora ? { lora: o.lora } : {}),
  });
  let measured: SizingResults['measured'] = null;
  let adapter = null;
  if (!o.staticOnly && source.dir) {
    const spec = source.measuredSpec!;
    const maxBatch = Math.max(...o.batchSizes);
    const decodeTokens = o.decodeTokens ?? 24;
    const maxContext = Math.min(spec.contextLength, Math.max(...o.measureContexts) + decodeTokens + 16);
    log(`loading ${source.label} (${o.dtype}) ...`);
    const engine = await Engine.load(source.dir, {
      forceF32: o.dtype === 'f32',
      weightDType: o.dtype === 'int8' ? 'int8' : undefined,
      maxBatchSequences: maxBatch,
      maxContextTokens: maxContext,
      // every sequence of the largest batch at the longest context, plus a block each of slack
      kvCacheBytes: kvBytesPerToken(spec, o.dtype) * maxBatch * (maxContext + 32),
      responseCacheEntries: 0,
    });
    try {
      adapter = adapterMetadata(engine.rt);
      if (o.dtype === 'f16' && !adapter.f16) log('note: adapter lacks shader-f16; the engine runs f32');
      const bar = progressBar('decode curves', o.batchSizes.length * o.measureContexts.length * (o.repeats ?? 3));
      measured = await measureDecodeCurves(engine, {
        batchSizes: o.batchSizes,
        contextLengths: o.measureContexts,
        decodeTokens,
        repeats: o.repeats,
        vocabSize: spec.vocabSize,
        onProgress: (done, _total, note) => bar.update(done, note),
      });
      bar.finish();
    } finally {
      await engine.close();
    }
  }
  const results: SizingResults = {
    static: stat,
    measured,
    tpotTargetMs: o.tpotTargetMs ?? null,
    largestBatch: measured && o.tpotTargetMs !== undefined ? largestBatchWithin(measured, o.tpotTargetMs) : null,
  };
  const meta = runMetadata({
    kind: 'sizing',
    adapter,
    model: { ...modelShape(source.fullSpec, parameterCount(source.fullSpec)), source: source.label },
    dtype: o.dtype,
    argv: o.argv,
    notes: source.notes,
  });
  const written =
    o.resultsDir === undefined
      ? undefined
      : writeRun({
          dir: o.resultsDir,
          meta,
          results,
          charts: measured ? sizingCharts(measured) : {},
          markdown: (files) => sizingMarkdown(meta, results, files),
        });
  return { results, written };
}
