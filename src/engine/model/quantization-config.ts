/**
 * config.json quantization_config -> ModelSpec.quantization. Only block-quantized FP8
 * (e4m3 weights with a scale per weight_block_size block) is read; it is dequantized at
 * load, so nothing past the reader knows. Every other method (GPTQ, AWQ, bitsandbytes,
 * compressed-tensors, per-tensor FP8, ...) stores weights the reader cannot turn into
 * floats: loading one anyway would serve noise, so it is refused here, by key.
 */
import { AutoGlmError } from '../../errors.js';
import type { Fp8BlockQuantization } from './model-spec.js';

const SUPPORTED = 'quant_method "fp8" with fmt "e4m3" and weight_block_size (block-quantized FP8, dequantized at load)';

export function quantizationFromConfig(config: Record<string, unknown>): Fp8BlockQuantization | null {
  const qc = config['quantization_config'];
  if (qc === undefined || qc === null) return null;
  if (typeof qc !== 'object' || Array.isArray(qc)) {
    throw new AutoGlmError('model_load_failed', `config.json quantization_config must be an object or null (got ${JSON.stringify(qc)})`);
  }
  const q = qc as Record<string, unknown>;
  const method = q['quant_method'];
  if (method !== 'fp8') {
    throw unsupported('quant_method', JSON.stringify(method ?? null));
  }
  // e5m2 weights would decode differently; transformers and vLLM assume e4m3 when fmt is absent
  const fmt = q['fmt'];
  if (fmt !== undefined && fmt !== null && fmt !== 'e4m3') throw unsupported('fmt', JSON.stringify(fmt));
  const block = q['weight_block_size'];
  if (block === undefined || block === null) {
    throw new AutoGlmError(
      'unsupported_architecture',
      'config.json quantization_config.weight_block_size is absent: FP8 with a scale per tensor is not supported; ' +
        `supported: ${SUPPORTED}`,
    );
  }
  if (!Array.isArray(block) || block.length !== 2 || !block.every((b) => typeof b === 'number' && Number.isInteger(b) && b > 0)) {
    throw new AutoGlmError(
      'model_load_failed',
      `config.json quantization_config.weight_block_size must be [rows, columns] of positive integers (got ${JSON.stringify(block)})`,
    );
  }
  // activation_scheme (dynamic or static) is not read: activations stay f16/f32 here, and a
  // static scheme's input_scale tensors go unread, as the MTP layer's do.
  // modules_to_not_convert / ignored_layers need nothing either: those weights are stored as
  // floats, and the reader goes by each tensor's own dtype.
  return { method: 'fp8', blockSize: [block[0] as number, block[1] as number] };
}

function unsupported(key: string, value: string): AutoGlmError {
  return new AutoGlmError(
    'unsupported_architecture',
    `config.json quantization_config.${key} ${value} is not supported; supported: ${SUPPORTED}`,
  );
}
