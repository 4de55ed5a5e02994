/**
 * The PEFT LoRA reader without a GPU: what it accepts (scale folded into B, rsLoRA, layers
 * it skips, GLM's fused gate_up_proj) and what it refuses by name rather than serving wrong
 * (DoRA, biases, modules_to_save, embeddings or lm_head LoRA, shape or rank mismatches).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLoraAdapters, validateLoraAdapterOptions } from '../../src/engine/lora/load-adapters.js';
import { ADAPTER_WEIGHTS_FILE, loadLoraAdapter } from '../../src/engine/lora/peft-adapter.js';
import { validateEngineOptions } from '../../src/engine/engine-options.js';
import { modelSpecFromConfig } from '../../src/engine/model/config.js';
import type { ModelSpec } from '../../src/engine/model/model-spec.js';
import { isAutoGlmError } from '../../src/errors.js';
import { generateLoraAdapter } from '../../src/testing/generate-lora.js';
import { writeSafetensors } from '../../src/testing/safetensors-writer.js';
import { failure, thrown } from '../helpers/caught.js';

const llama: ModelSpec = modelSpecFromConfig({
  model_type: 'llama',
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
});
const glm: ModelSpec = modelSpecFromConfig({
  model_type: 'glm',
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  max_position_embeddings: 64,
});

let root: string;
let n = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'autoglm-peft-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
const fresh = (): string => join(root, `a${n++}`);

async function refusal(dir: string, spec: ModelSpec = llama): Promise<string> {
  const e = await failure(() => loadLoraAdapter('x', dir, spec));
  expect(isAutoGlmError(e) && e.code).toBe('model_load_failed');
  return (e as Error).message;
}

describe('PEFT LoRA reader', () => {
  it('reads every layer and module, with lora_alpha / r folded into B', async () => {
    const dir = fresh();
    await generateLoraAdapter(dir, llama, { rank: 4, alpha: 12, seed: 5 });
    const plain = fresh();
    await generateLoraAdapter(plain, llama, { rank: 4, alpha: 4, seed: 5 });
    const a = await loadLoraAdapter('scaled', dir, llama);
    const b = await loadLoraAdapter('unit', plain, llama);
    expect([a.rank, a.scale, b.scale]).toEqual([4, 3, 1]);
    expect(a.modules).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    expect(a.layers.map((l) => l.size)).toEqual([7, 7, 7]);
    const q = a.layers[2]!.get('q_proj')!;
    expect([q.a.length, q.b.length]).toEqual([4 * 32, 32 * 4]);
    // same seed: A equal, B three times the unit-scale one
    expect(q.a).toEqual(b.layers[2]!.get('q_proj')!.a);
    const unitB = b.layers[2]!.get('q_proj')!.b;
    q.b.forEach((v, i) => expect(v).toBeCloseTo(3 * unitB[i]!, 6));
    expect(a.parameterCount).toBe(3 * 4 * (2 * 32 + 2 * (32 + 16) + 2 * 32 + 2 * (32 + 48) + (48 + 32)));
  });

  it('reads BF16 and F16 adapters as their values (what PEFT saves for a bf16 base model)', async () => {
    const f32 = fresh();
    await generateLoraAdapter(f32, llama, { rank: 2, seed: 9, dtype: 'f32' });
    const want = (await loadLoraAdapter('f32', f32, llama)).layers[1]!.get('down_proj')!;
    for (const dtype of ['bf16', 'f16'] as const) {
      const dir = fresh();
      await generateLoraAdapter(dir, llama, { rank: 2, seed: 9, dtype });
      const got = (await loadLoraAdapter(dtype, dir, llama)).layers[1]!.get('down_proj')!;
      const bound = dtype === 'bf16' ? 2 ** -8 : 2 ** -11;
      got.a.forEach((v, i) => expect(Math.abs(v - want.a[i]!)).toBeLessThanOrEqual(Math.abs(want.a[i]!) * bound));
      got.b.forEach((v, i) => expect(Math.abs(v - want.b[i]!)).toBeLessThanOrEqual(Math.abs(want.b[i]!) * bound));
    }
  });

  it('rsLoRA scales by lora_alpha / sqrt(r); skipped layers hold nothing; GLM takes its fused gate_up_proj', async () => {
    const dir = fresh();
    await generateLoraAdapter(dir, llama, { rank: 16, alpha: 8, useRslora: true, layers: [1], targetModules: ['q_proj', 'v_proj'] });
    const a = await loadLoraAdapter('rs', dir, llama);
    expect(a.scale).toBe(2);
    expect(a.layers.map((l) => [...l.keys()])).toEqual([[], ['q_proj', 'v_proj'], []]);
    const g = fresh();
    await generateLoraAdapter(g, glm, { rank: 2 });
    expect((await loadLoraAdapter('glm', g, glm)).modules).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_up_proj', 'down_proj']);
  });

  it('refuses adapter_config.json settings it cannot apply exactly, naming them', async () => {
    for (const [key, value] of [
      ['use_dora', true],
      ['bias', 'lora_only'],
      ['modules_to_save', ['lm_head']],
      ['rank_pattern', { q_proj: 8 }],
      ['alpha_pattern', { q_proj: 8 }],
      ['fan_in_fan_out', true],
      ['peft_type', 'IA3'],
      ['r', 0],
      ['r', 1000],
    ] as const) {
      const dir = fresh();
      await generateLoraAdapter(dir, llama, { rank: 2, extraConfig: { [key]: value } });
      expect(await refusal(dir), key).toContain(key);
    }
  });

  it('refuses tensors that are not layer projection A/B pairs of the right shapes', async () => {
    const write = async (tensors: { name: string; shape: number[] }[], r = 2): Promise<string> => {
      const dir = fresh();
      await generateLoraAdapter(dir, llama, { rank: r, targetModules: ['q_proj'], layers: [0] });
      await writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, 'f32', (t) =>
        new Float32Array(t.shape.reduce((x, y) => x * y, 1)).fill(0.5),
      );
      return dir;
    };
    const p = 'base_model.model.model.layers.0.self_attn.q_proj';
    expect(await refusal(await write([{ name: 'base_model.model.model.embed_tokens.lora_embedding_A', shape: [2, 64] }]))).toContain(
      'embed_tokens',
    );
    expect(await refusal(await write([{ name: 'base_model.model.lm_head.lora_A.weight', shape: [2, 32] }]))).toContain('lm_head');
    expect(await refusal(await write([{ name: `${p}.lora_A.weight`, shape: [2, 32] }]))).toContain('without lora_B');
    expect(
      await refusal(
        await write([
          { name: `${p}.lora_A.weight`, shape: [2, 31] },
          { name: `${p}.lora_B.weight`, shape: [32, 2] },
        ]),
      ),
    ).toContain('[r, 32]');
    expect(
      await refusal(
        await write([
          { name: `${p}.lora_A.weight`, shape: [2, 32] },
          { name: `${p}.lora_B.weight`, shape: [16, 2] },
        ]),
      ),
    ).toContain('[32, 2]');
    expect(
      await refusal(
        await write([
          { name: `${p}.lora_A.weight`, shape: [3, 32] },
          { name: `${p}.lora_B.weight`, shape: [32, 3] },
        ]),
      ),
    ).toContain('r is 2');
    const layer9 = 'base_model.model.model.layers.9.self_attn.q_proj';
    expect(
      await refusal(
        await write([
          { name: `${layer9}.lora_A.weight`, shape: [2, 32] },
          { name: `${layer9}.lora_B.weight`, shape: [32, 2] },
        ]),
      ),
    ).toContain('3 layers');
    const fused = 'base_model.model.model.layers.0.mlp.gate_up_proj';
    expect(
      await refusal(
        await write([
          { name: `${fused}.lora_A.weight`, shape: [2, 32] },
          { name: `${fused}.lora_B.weight`, shape: [96, 2] },
        ]),
      ),
    ).toContain('gate_up_proj does not exist');
    expect(await refusal(await write([]))).toContain('no LoRA tensors');
    // a multimodal model's vision tower is not the decoder
    const vision = 'base_model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj';
    expect(
      await refusal(
        await write([
          { name: `${vision}.lora_A.weight`, shape: [2, 32] },
          { name: `${vision}.lora_B.weight`, shape: [32, 2] },
        ]),
      ),
    ).toContain('vision_tower');
    // Gemma 3 with its vision tower nests the decoder; both of its namings are read
    for (const nested of ['base_model.model.language_model.model.layers.0', 'base_model.model.model.language_model.layers.0']) {
      const dir = await write([
        { name: `${nested}.self_attn.q_proj.lora_A.weight`, shape: [2, 32] },
        { name: `${nested}.self_attn.q_proj.lora_B.weight`, shape: [32, 2] },
      ]);
      const adapter = await loadLoraAdapter('x', dir, llama);
      expect(adapter.layers[0]!.get('q_proj'), nested).toBeDefined();
    }
  });

  it('a folder without the files is refused naming the file', async () => {
    const dir = fresh();
    expect(await refusal(dir)).toContain('adapter_config.json');
    await mkdir(dir);
    await writeFile(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4 }));
    expect(await refusal(dir)).toContain(ADAPTER_WEIGHTS_FILE);
  });

  it('engine options: names are checked, unique and not the base model name', async () => {
    const bad = (list: unknown) => {
      const e = thrown(() => validateLoraAdapterOptions(list));
      expect(isAutoGlmError(e) && e.param).toBe('loraAdapters');
    };
    bad('x=/y');
    bad([{ name: 'a' }]);
    bad([{ name: '', path: '/x' }]);
    bad([{ name: 'a b', path: '/x' }]);
    bad([
      { name: 'a', path: '/x' },
      { name: 'a', path: '/y' },
    ]);
    bad(Array.from({ length: 65 }, (_, i) => ({ name: `a${i}`, path: '/x' })));
    expect(thrown(() => validateEngineOptions({ loraAdapters: [{ name: 'ok', path: '/x' }] }))).toBeUndefined();
    expect(isAutoGlmError(thrown(() => validateEngineOptions({ loraAdapters: [{ name: 'a b', path: '/x' }] })))).toBe(true);
    const e = await failure(() => loadLoraAdapters([{ name: 'base', path: '/nowhere' }], llama, 'base'));
    expect((e as Error).message).toContain("base model's name");
  });
});
