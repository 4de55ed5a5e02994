/**
 * Block-quantized FP8 weights (DeepSeek-V3's layout, also Qwen3-*-FP8 and GLM-4.5-FP8):
 * X.weight is F8_E4M3 [N, K] and X.weight_scale_inv (F32, sometimes BF16) holds one scale
 * per [bn, bk] block, [ceil(N/bn), ceil(K/bk)], the last row and column of blocks partial.
 * Despite the name the scale multiplies: w[n][k] = fp8[n][k] * scale_inv[n / bn][k / bk]
 * (vLLM's and DeepSeek's weight_dequant). Decoded and multiplied in f32 here, so the values
 * go through the same f16 / f32 / int8 upload as any float checkpoint's.
 */
import { AutoGlmError } from '../../errors.js';
import { countNonFiniteF32, f8E4m3Table } from './dtype-convert.js';
import type { Fp8BlockQuantization } from './model-spec.js';
import { invalidSafetensors, isSupportedDtype, type RowRange, type TensorInfo } from './safetensors.js';

export const FP8_DTYPE = 'F8_E4M3';

/** The companion tensor holding a block-quantized weight's scales. */
export function scaleTensorName(weightName: string): string {
  return `${weightName}_scale_inv`;
}

/**
 * What the reader knows of the checkpoint's quantization: the spec's (null when config.json
 * has no quantization_config), or 'unknown' when the weights were opened without a spec.
 */
export type KnownQuantization = Fp8BlockQuantization | null | 'unknown';

/**
 * Checks that an F8_E4M3 tensor can be dequantized: config.json gives the block size, the
 * weight is 2-D, and its scales are there with a float dtype and one value per block.
 * Returns the block size. Throws invalid_safetensors naming the weight (and the scales).
 */
export function checkBlockFp8(weight: TensorInfo, scale: TensorInfo | undefined, quant: KnownQuantization): [number, number] {
  const scaleName = scaleTensorName(weight.name);
  const fail = (why: string): AutoGlmError => invalidSafetensors(weight.file, why, weight.name);
  if (quant === 'unknown') {
    throw fail(`dtype ${FP8_DTYPE} needs config.json quantization_config's weight_block_size: open the weights with the model's spec`);
  }
  if (quant === null) {
    throw fail(
      `dtype ${FP8_DTYPE}, but config.json has no quantization_config saying how it is scaled ` +
        '(an FP8 checkpoint\'s names quant_method "fp8" and weight_block_size)',
    );
  }
  const [bn, bk] = quant.blockSize;
  if (weight.shape.length !== 2) {
    throw fail(`dtype ${FP8_DTYPE} with block scales applies to 2-D weights, not shape [${weight.shape.join(', ')}]`);
  }
  if (!scale) throw fail(`dtype ${FP8_DTYPE}, but its block scales "${scaleName}" are missing`);
  if (!isSupportedDtype(scale.dtype)) {
    throw fail(`its block scales "${scaleName}" have dtype ${scale.dtype}; F32, F16 or BF16 expected`);
  }
  const [N, K] = weight.shape as [number, number];
  const want = [Math.ceil(N / bn), Math.ceil(K / bk)];
  if (scale.shape.length !== 2 || scale.shape[0] !== want[0] || scale.shape[1] !== want[1]) {
    throw fail(
      `its block scales "${scaleName}" have shape [${scale.shape.join(', ')}], but a [${N}, ${K}] weight in ` +
        `weight_block_size [${bn}, ${bk}] blocks needs [${want.join(', ')}]`,
    );
  }
  return [bn, bk];
}

/** The rows of the scale tensor that cover weight rows `rows` (blocks of `blockRows`). */
export function scaleRowsFor(rows: RowRange, blockRows: number): RowRange {
  if (rows.rowCount === 0) return { rowStart: Math.floor(rows.rowStart / blockRows), rowCount: 0 };
  const first = Math.floor(rows.rowStart / blockRows);
  const last = Math.floor((rows.rowStart + rows.rowCount - 1) / blockRows);
  return { rowStart: first, rowCount: last - first + 1 };
}

export interface BlockFp8Rows {
  /** The weight's first row in `fp8`, and how many rows it holds. */
  rowStart: number;
  rowCount: number;
  /** K. */
  cols: number;
  blockSize: [number, number];
}

/**
 * fp8 bytes of rows [rowStart, rowStart + rowCount) times their blocks' scales, as f32.
 * `scales` holds the scale rows scaleRowsFor gives (the first one covering rowStart).
 * The product of two f32 values is exact in a double, so storing it rounds once: f32
 * multiplication, as torch's (fp8.float() * scale) does.
 */
export function dequantizeBlockFp8(fp8: Uint8Array, scales: Float32Array, at: BlockFp8Rows): Float32Array {
  const { rowStart, rowCount, cols } = at;
  const [bn, bk] = at.blockSize;
  const table = f8E4m3Table();
  const scaleCols = Math.ceil(cols / bk);
  const firstScaleRow = Math.floor(rowStart / bn);
  const out = new Float32Array(rowCount * cols);
  for (let r = 0; r < rowCount; r++) {
    const scaleRow = (Math.floor((rowStart + r) / bn) - firstScaleRow) * scaleCols;
    const base = r * cols;
    for (let kb = 0; kb < scaleCols; kb++) {
      const s = scales[scaleRow + kb]!;
      const end = base + Math.min(cols, (kb + 1) * bk);
      for (let i = base + kb * bk; i < end; i++) out[i] = table[fp8[i]!]! * s;
    }
  }
  return out;
}

/**
 * Why dequantized values came out NaN or infinite where the weight's bytes hold no NaN (the
 * reader reports those as any dtype's): non-finite scales, or finite scales so large that
 * the product leaves f32's range. Each means a corrupted or badly exported checkpoint.
 */
export function blockFp8NonFinite(weight: TensorInfo, scales: Float32Array, nonFinite: number): AutoGlmError {
  const scaleName = scaleTensorName(weight.name);
  const badScales = countNonFiniteF32(scales);
  if (badScales > 0)
    return invalidSafetensors(
      weight.file,
      `${badScales} of its block scales in "${scaleName}" are NaN or infinite (a corrupted or badly exported checkpoint)`,
      weight.name,
    );
  return invalidSafetensors(
    weight.file,
    `${nonFinite} of its values times their block scales in "${scaleName}" are NaN or infinite, beyond f32's range ` +
      '(a corrupted or badly exported checkpoint)',
    weight.name,
  );
}
