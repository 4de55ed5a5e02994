/**
 * A model folder's weights, single-file (model.safetensors) or sharded
 * (model.safetensors.index.json + shards), behind one streaming interface: the uploader
 * asks for one tensor at a time, converted to f32 values or f16 bits (block-quantized FP8
 * weights dequantized on the way, block-fp8.ts).
 */
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { AutoGlmError } from '../../errors.js';
import {
  blockFp8NonFinite,
  checkBlockFp8,
  dequantizeBlockFp8,
  FP8_DTYPE,
  scaleRowsFor,
  scaleTensorName,
  type KnownQuantization,
} from './block-fp8.js';
import {
  countNonFiniteF16,
  countNonFiniteF32,
  countNaNF8E4m3,
  countNonFiniteRaw,
  float32ToF16Bits,
  toFloat16Bits,
  toFloat32,
  type SafetensorsDtype,
} from './dtype-convert.js';
import { listWeights, type ModelSpec } from './model-spec.js';
import { readJsonFile } from './config.js';
import { fileProblem } from './model-file.js';
import { SafetensorsFile, invalidSafetensors, isSupportedDtype, type RowRange, type TensorInfo } from './safetensors.js';

export type { RowRange, TensorInfo } from './safetensors.js';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

export interface OpenModelWeightsOptions {
  /**
   * When given, every tensor the spec needs is checked (presence, shape, dtype) before
   * returning, and F8_E4M3 weights are read with its quantization's block size.
   */
  spec?: ModelSpec;
}

/** The dtypes read() takes, for its refusals. */
const READABLE = `F32, F16, BF16, and ${FP8_DTYPE} with block scales`;

export interface ModelWeights {
  readonly dir: string;
  readonly tensorNames: readonly string[];
  /** The safetensors files, in index order. */
  readonly files: readonly string[];
  has(name: string): boolean;
  /** Throws invalid_safetensors naming the tensor when absent. */
  info(name: string): TensorInfo;
  /** The tensor (or a range of its rows) as f32 values (an F8_E4M3 one dequantized with its block scales). */
  read(name: string, as: 'f32', rows?: RowRange): Promise<Float32Array>;
  /** The tensor (or a range of its rows) as f16 bit patterns, rounded to nearest even. */
  read(name: string, as: 'f16', rows?: RowRange): Promise<Uint16Array>;
  readRaw(name: string, rows?: RowRange): Promise<Uint8Array>;
  /** Checks the tensors a spec needs; throws invalid_safetensors naming file and tensor. */
  validate(spec: ModelSpec): void;
  close(): Promise<void>;
}

export async function openModelWeights(dir: string, options: OpenModelWeightsOptions = {}): Promise<ModelWeights> {
  const indexPath = join(dir, INDEX_FILE);
  // anything at the index's path (a broken link included) makes the folder sharded, and its fault is reported
  const quant: KnownQuantization = options.spec ? options.spec.quantization : 'unknown';
  const weights = (await fileProblem(indexPath))?.missing ? await openSingle(dir, quant) : await openSharded(dir, indexPath, quant);
  if (options.spec) {
    try {
      weights.validate(options.spec);
    } catch (e) {
      await weights.close();
      throw e;
    }
  }
  return weights;
}

/** One safetensors file (a LoRA adapter's adapter_model.safetensors) behind the same reader as a model's weights. */
export async function openWeightsFile(path: string): Promise<ModelWeights> {
  const file = await SafetensorsFile.open(path);
  return new ModelWeightsReader(dirname(path), [file], new Map([...file.tensors.keys()].map((n) => [n, file])), null);
}

async function openSingle(dir: string, quant: KnownQuantization): Promise<ModelWeightsReader> {
  const path = join(dir, SINGLE_FILE);
  if ((await fileProblem(path))?.missing) {
    let listing = '';
    try {
      listing = (await readdir(dir)).join(', ');
    } catch {
      // the folder itself is missing: the message says so below
    }
    throw new AutoGlmError(
      'model_load_failed',
      `${dir}: neither ${SINGLE_FILE} nor ${INDEX_FILE} found${listing ? ` (folder holds: ${listing})` : ' (folder missing or empty)'}`,
    );
  }
  const file = await SafetensorsFile.open(path);
  return new ModelWeightsReader(dir, [file], new Map([...file.tensors.keys()].map((n) => [n, file])), quant);
}

async function openSharded(dir: string, indexPath: string, quant: KnownQuantization): Promise<ModelWeightsReader> {
  const index = await readJsonFile(indexPath);
  const map = index['weight_map'];
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new AutoGlmError('invalid_safetensors', `${indexPath}: weight_map is missing or not an object`);
  }
  const entries = Object.entries(map as Record<string, unknown>);
  const byFileName = new Map<string, string[]>();
  for (const [tensor, fileName] of entries) {
    if (typeof fileName !== 'string' || fileName === '' || fileName.includes('/') || fileName.includes('\\') || fileName.startsWith('.')) {
      throw new AutoGlmError(
        'invalid_safetensors',
        `${indexPath}: tensor "${tensor}" maps to ${JSON.stringify(fileName)}, not a file name in the folder`,
      );
    }
    const list = byFileName.get(fileName) ?? [];
    list.push(tensor);
    byFileName.set(fileName, list);
  }
  const files: SafetensorsFile[] = [];
  const owner = new Map<string, SafetensorsFile>();
  try {
    for (const [fileName, tensors] of byFileName) {
      const path = join(dir, fileName);
      if ((await fileProblem(path))?.missing) {
        throw new AutoGlmError(
          'invalid_safetensors',
          `${indexPath}: shard ${fileName} (holding "${tensors[0]}" and ${tensors.length - 1} more) is missing`,
        );
      }
      const file = await SafetensorsFile.open(path);
      files.push(file);
      for (const t of tensors) {
        if (!file.tensors.has(t)) throw invalidSafetensors(path, `listed in ${INDEX_FILE} but not in this shard`, t);
        owner.set(t, file);
      }
    }
  } catch (e) {
    await Promise.all(files.map((f) => f.close()));
    throw e;
  }
  return new ModelWeightsReader(dir, files, owner, quant);
}

class ModelWeightsReader implements ModelWeights {
  readonly tensorNames: readonly string[];
  readonly files: readonly string[];

  constructor(
    readonly dir: string,
    private readonly shardFiles: SafetensorsFile[],
    private readonly owner: Map<string, SafetensorsFile>,
    /** The block size F8_E4M3 weights are read with. */
    private readonly quantization: KnownQuantization,
  ) {
    this.tensorNames = [...owner.keys()];
    this.files = shardFiles.map((f) => f.path);
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): TensorInfo {
    const file = this.owner.get(name);
    if (!file) throw new AutoGlmError('invalid_safetensors', `${this.where()}: tensor "${name}": missing`);
    return file.info(name);
  }

  read(name: string, as: 'f32', rows?: RowRange): Promise<Float32Array>;
  read(name: string, as: 'f16', rows?: RowRange): Promise<Uint16Array>;
  async read(name: string, as: 'f32' | 'f16', rows?: RowRange): Promise<Float32Array | Uint16Array> {
    const t = this.info(name);
    if (t.dtype === FP8_DTYPE) return this.readBlockFp8(t, as, rows);
    if (!isSupportedDtype(t.dtype)) throw invalidSafetensors(t.file, `dtype ${t.dtype} is not supported (${READABLE})`, name);
    const bytes = await this.readRaw(name, rows);
    const values = as === 'f32' ? toFloat32(bytes, t.dtype) : toFloat16Bits(bytes, t.dtype);
    const nonFinite = values instanceof Float32Array ? countNonFiniteF32(values) : countNonFiniteF16(values);
    if (nonFinite > 0) {
      const inFile = countNonFiniteRaw(bytes, t.dtype);
      throw inFile > 0 ? nonFiniteInFile(t, inFile) : beyondF16Range(t, t.dtype, nonFinite);
    }
    return values;
  }

  /** An F8_E4M3 weight's rows times their block scales, in f32 (rounded to f16 after, for 'f16'). */
  private async readBlockFp8(t: TensorInfo, as: 'f32' | 'f16', rows?: RowRange): Promise<Float32Array | Uint16Array> {
    const scale = this.scalesOf(t);
    const blockSize = checkBlockFp8(t, scale, this.quantization);
    const range = rows ?? { rowStart: 0, rowCount: t.shape[0]! };
    const fp8 = await this.readRaw(t.name, rows);
    const scales = toFloat32(await this.readRaw(scale!.name, scaleRowsFor(range, blockSize[0])), scale!.dtype as SafetensorsDtype);
    const values = dequantizeBlockFp8(fp8, scales, { ...range, cols: t.shape[1]!, blockSize });
    const nonFinite = countNonFiniteF32(values);
    if (nonFinite > 0) {
      const nanBytes = countNaNF8E4m3(fp8);
      throw nanBytes > 0 ? nonFiniteInFile(t, nanBytes) : blockFp8NonFinite(t, scales, nonFinite);
    }
    if (as === 'f32') return values;
    const bits = float32ToF16Bits(values);
    const beyond = countNonFiniteF16(bits);
    if (beyond > 0) throw beyondF16Range(t, `dequantized ${FP8_DTYPE}`, beyond);
    return bits;
  }

  /** An F8_E4M3 weight's block scales (block-fp8.ts), when the checkpoint has them. */
  private scalesOf(weight: TensorInfo): TensorInfo | undefined {
    const name = scaleTensorName(weight.name);
    return this.has(name) ? this.info(name) : undefined;
  }

  readRaw(name: string, rows?: RowRange): Promise<Uint8Array> {
    this.info(name);
    return this.owner.get(name)!.readBytes(name, rows);
  }

  validate(spec: ModelSpec): void {
    for (const ref of listWeights(spec.weights)) {
      // A missing LM head most often means a tied checkpoint whose config.json does not say
      // so (tie_word_embeddings absent, defaulting to false): name the key that decides it.
      if (ref === spec.weights.lmHead && !this.has(ref.name)) {
        throw new AutoGlmError(
          'invalid_safetensors',
          `${this.where()}: tensor "${ref.name}": missing, and config.json leaves the embeddings untied ` +
            '(tie_word_embeddings false or absent), so the checkpoint must hold its own LM head',
        );
      }
      const t = this.info(ref.name);
      if (t.dtype === FP8_DTYPE) checkBlockFp8(t, this.scalesOf(t), spec.quantization);
      else if (!isSupportedDtype(t.dtype)) {
        throw invalidSafetensors(t.file, `dtype ${t.dtype} is not supported (${READABLE})`, ref.name);
      }
      if (t.shape.length !== ref.shape.length || t.shape.some((d, i) => d !== ref.shape[i])) {
        throw invalidSafetensors(
          t.file,
          `shape [${t.shape.join(', ')}] does not match [${ref.shape.join(', ')}] expected from config.json`,
          ref.name,
        );
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.shardFiles.map((f) => f.close()));
  }

  private where(): string {
    return this.shardFiles.length === 1 ? this.shardFiles[0]!.path : join(this.dir, INDEX_FILE);
  }
}

/**
 * Why a weight read back non-finite values: the checkpoint itself holds NaN or Infinity (a
 * corrupted or badly exported file: every output would be NaN; block-fp8.ts tells the FP8
 * cases apart), or finite values beyond f16's range (65504) overflowed where bf16, f32 or
 * dequantized FP8 weights are converted to f16, which f32 weights avoid. Checked on every
 * read: the load fails instead of serving garbage.
 */
function nonFiniteInFile(t: TensorInfo, inFile: number): AutoGlmError {
  return invalidSafetensors(
    t.file,
    `${inFile} of its ${t.dtype} values are NaN or infinite (a corrupted or badly exported checkpoint)`,
    t.name,
  );
}

/** `what`: the values' kind for the message (the dtype, or "dequantized F8_E4M3"). */
function beyondF16Range(t: TensorInfo, what: string, count: number): AutoGlmError {
  return new AutoGlmError(
    'model_load_failed',
    `${t.file}: tensor "${t.name}": ${count} ${what} values lie beyond f16's range (|v| > 65504) and would become infinite; ` +
      'serve this model with f32 weights and activations instead (autoglm serve --force-f32, or the forceF32 engine option)',
  );
}
