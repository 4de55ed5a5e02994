/**
 * A PEFT LoRA adapter merged into float64 weights the way PEFT's merge_and_unload does it:
 * W += (lora_alpha / r) * B A, or lora_alpha / sqrt(r) with use_rslora. Read with nothing
 * from the engine's adapter code: only the safetensors reader is shared.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openWeightsFile } from '../../src/engine/model/sharded.js';

export async function mergeLoraInto(weights: Map<string, Float64Array>, adapterDir: string): Promise<void> {
  const config = JSON.parse(await readFile(join(adapterDir, 'adapter_config.json'), 'utf8')) as {
    r: number;
    lora_alpha: number;
    use_rslora?: boolean;
  };
  const scale = config.use_rslora ? config.lora_alpha / Math.sqrt(config.r) : config.lora_alpha / config.r;
  const file = await openWeightsFile(join(adapterDir, 'adapter_model.safetensors'));
  try {
    for (const name of file.tensorNames.filter((n) => n.endsWith('.lora_A.weight'))) {
      const module = name.replace(/^base_model\.model\./, '').replace(/\.lora_A\.weight$/, '');
      const target = weights.get(`${module}.weight`);
      if (!target) throw new Error(`${name}: no base weight ${module}.weight`);
      const a = await file.read(name, 'f32');
      const b = await file.read(name.replace('lora_A', 'lora_B'), 'f32');
      const [r, inF] = file.info(name).shape as [number, number];
      const outF = target.length / inF;
      for (let o = 0; o < outF; o++) {
        for (let i = 0; i < inF; i++) {
          let sum = 0;
          for (let j = 0; j < r; j++) sum += b[o * r + j]! * a[j * inF + i]!;
          target[o * inF + i]! += scale * sum;
        }
      }
    }
  } finally {
    await file.close();
  }
}
