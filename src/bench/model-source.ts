/**
 * Where a benchmark's model comes from: a real folder, or a generated one of a preset
 * shape (1b, 7b, ...) so users can size a GPU before downloading anything. Big shapes
 * can be cut to their first `maxLayers` layers for measurement on small adapters; the
 * static sizing always uses the full shape, and the report says when layers were cut.
 */
import { AutoGlmError } from '../errors.js';
import { loadModelSpec, type ModelSpec } from '../engine/model/index.js';
import { MODEL_PRESETS, ensureGeneratedModel, generateTestModel, type PresetName } from '../testing/generate-model.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ModelSource {
  /** The full model's spec (for static sizing). */
  fullSpec: ModelSpec;
  /** Folder to load for measurement (absent when only static sizing was asked for). */
  dir?: string;
  /** The spec of what is measured (fewer layers when cut). */
  measuredSpec?: ModelSpec;
  /** Human description: the folder, or 'generated 1b shape (2 of 16 layers)'. */
  label: string;
  notes: string[];
}

export const SHAPE_NAMES = Object.keys(MODEL_PRESETS) as PresetName[];

export function isShapeName(name: string): name is PresetName {
  return (SHAPE_NAMES as string[]).includes(name);
}

/** The full spec of a preset shape (llama architecture), without writing anything. */
export async function presetSpec(shape: PresetName): Promise<ModelSpec> {
  const dir = await mkdtemp(join(tmpdir(), 'autoglm-shape-'));
  try {
    const generated = await generateTestModel(dir, { preset: shape, weights: false });
    return generated.spec;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function resolveModelSource(options: {
  modelDir?: string;
  shape?: string;
  /** Generate (or reuse a cached) folder to measure. */
  measure: boolean;
  dtype: 'f16' | 'f32';
  maxLayers?: number;
}): Promise<ModelSource> {
  if (options.modelDir) {
    const spec = await loadModelSpec(options.modelDir);
    if (options.maxLayers !== undefined) {
      throw new AutoGlmError('invalid_request', '--max-layers applies to generated shapes only (--shape)', { param: 'max-layers' });
    }
    return { fullSpec: spec, dir: options.modelDir, measuredSpec: spec, label: options.modelDir, notes: [] };
  }
  if (!options.shape) throw new AutoGlmError('invalid_request', 'give --model DIR or --shape ' + SHAPE_NAMES.join('|'), { param: 'model' });
  if (!isShapeName(options.shape)) {
    throw new AutoGlmError('invalid_request', `unknown shape '${options.shape}'; known: ${SHAPE_NAMES.join(', ')}`, { param: 'shape' });
  }
  const preset = MODEL_PRESETS[options.shape];
  const fullSpec = await presetSpec(options.shape);
  if (!options.measure) return { fullSpec, label: `${options.shape} shape`, notes: [] };
  const layers = Math.min(options.maxLayers ?? preset.shape.layers, preset.shape.layers);
  if (!(layers >= 1)) throw new AutoGlmError('invalid_request', '--max-layers must be >= 1', { param: 'max-layers' });
  // The 'tiny' preset with every shape field overridden: the generator refuses to write
  // weights for sizing-only presets by name, but an explicit shape is the caller's choice.
  const dir = await ensureGeneratedModel('tiny', {
    ...preset.shape,
    layers,
    dtype: options.dtype,
    tiedEmbeddings: preset.tiedEmbeddings ?? false,
  });
  const measuredSpec = await loadModelSpec(dir);
  const cut = layers < preset.shape.layers;
  const label = `generated ${options.shape} shape${cut ? ` (first ${layers} of ${preset.shape.layers} layers)` : ''}`;
  const notes = cut
    ? [
        `Measured on ${layers} of ${preset.shape.layers} layers (--max-layers ${layers}): per-token times cover the embedding, LM head and ${layers} layers; ` +
          `a full model's decode time is roughly head + ${preset.shape.layers}/${layers} x the layer part.`,
      ]
    : [];
  return { fullSpec, dir, measuredSpec, label, notes };
}
