import { describe, expect, it } from 'vitest';
import { loadModelSpec, modelSpecFromConfig } from '../../src/engine/model/index.js';
import { formatBytes, parseByteSize } from '../../src/bench/byte-size.js';
import { kvBytesPerToken, staticSizing, weightBytes } from '../../src/bench/sizing.js';

// Llama-2-7b-hf's config.json (the numbers people know: 6.74B parameters, 0.5 MiB KV per token in f16).
const LLAMA2_7B = {
  model_type: 'llama',
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 11008,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
};

describe('byte sizes', () => {
  it('parse binary and decimal units', () => {
    expect(parseByteSize('80GiB')).toBe(80 * 2 ** 30);
    expect(parseByteSize('24GB')).toBe(24e9);
    expect(parseByteSize('512 MiB')).toBe(512 * 2 ** 20);
    expect(parseByteSize('1.5g')).toBe(1.5 * 2 ** 30);
    expect(parseByteSize('4096')).toBe(4096);
    for (const bad of ['', 'lots', '80XB', '0', '-1GiB']) expect(() => parseByteSize(bad)).toThrow(/memory/);
    expect(formatBytes(13_476_831_232)).toBe('12.6 GiB');
    expect(formatBytes(512)).toBe('512 B');
  });
});

describe('static sizing', () => {
  it('Llama-2-7B in f16 on an 80 GiB card, against hand-computed numbers', () => {
    const spec = modelSpecFromConfig(LLAMA2_7B);
    const s = staticSizing(spec, { memoryBytes: 80 * 2 ** 30, dtype: 'f16', contextLengths: [512, 4096] });
    expect(s.parameters).toBe(6_738_415_616);
    expect(s.weightBytes).toBe(13_476_831_232);
    expect(s.kvBytesPerToken).toBe(524_288); // 2 * 32 layers * 32 heads * 128 dims * 2 bytes
    expect(s.usableBytes).toBe(77_309_411_328); // 0.9 of 80 GiB
    // 2048 rows x (2*4096 + 3*4096 + 4096 + 2*11008) f32 + 256 x 32000 f32 logits
    expect(s.activationBytes).toBe(414_449_664);
    expect(s.kvBudgetBytes).toBe(77_309_411_328 - 13_476_831_232 - 414_449_664);
    expect(s.kvBlocks).toBe(7560); // floor(63,418,130,432 / (16 * 524,288))
    expect(s.kvTokenCapacity).toBe(120_960);
    expect(s.contexts[0]).toMatchObject({ contextTokens: 512, kvBytesPerSequence: 268_435_456, maxSequences: 236 });
    expect(s.contexts[1]).toMatchObject({ contextTokens: 4096, kvBytesPerSequence: 2_147_483_648, maxSequences: 29 });
    expect(s.fits).toBe(true);
  });

  it('LoRA slots (--max-loras 8, rank 16) come out of the KV budget, against hand-computed bytes', () => {
    const spec = modelSpecFromConfig(LLAMA2_7B);
    const plain = staticSizing(spec, { memoryBytes: 80 * 2 ** 30, dtype: 'f16' });
    const s = staticSizing(spec, { memoryBytes: 80 * 2 ** 30, dtype: 'f16', lora: { slots: 8, rank: 16 } });
    // per slot and layer: stacked A [R, K] and B [N, 16] in f32, GEMM copies [R, K] and [N, R] in f16:
    // q|k|v (K 4096, N 12288, R 48) 3,145,728; o (4096, 4096, 16) 786,432;
    // gate|up (4096, 22016, 32) 3,604,480; down (11008, 4096, 16) 1,449,984; x 8 slots x 32 layers
    expect(s.loraBytes).toBe(8 * 32 * (3_145_728 + 786_432 + 3_604_480 + 1_449_984));
    // all f32 (--dtype f32): 4,718,592 + 1,048,576 + 5,275,648 + 1,933,312 per slot and layer
    const f32 = staticSizing(spec, { memoryBytes: 80 * 2 ** 30, dtype: 'f32', lora: { slots: 8, rank: 16 } });
    expect(f32.loraBytes).toBe(8 * 32 * (4_718_592 + 1_048_576 + 5_275_648 + 1_933_312));
    expect(s.kvBudgetBytes).toBe(plain.kvBudgetBytes - s.loraBytes);
    expect(plain.loraBytes).toBe(0);
  });

  it('f32 doubles weights and KV; GQA divides KV by the group size', () => {
    const spec = modelSpecFromConfig(LLAMA2_7B);
    expect(kvBytesPerToken(spec, 'f32')).toBe(1_048_576);
    const gqa = modelSpecFromConfig({ ...LLAMA2_7B, num_key_value_heads: 8 });
    expect(kvBytesPerToken(gqa, 'f16')).toBe(131_072);
    const s = staticSizing(spec, { memoryBytes: 16 * 2 ** 30, dtype: 'f32' });
    expect(s.weightBytes).toBe(26_953_662_464);
    expect(s.fits).toBe(false);
    expect(s.kvBlocks).toBe(0);
    expect(s.contexts.every((c) => c.maxSequences === 0)).toBe(true);
  });

  it('int8: matmul weights a byte each plus a 4-byte scale per 64, the rest and the KV cache f16', () => {
    const spec = modelSpecFromConfig(LLAMA2_7B);
    // per layer q, k, v, o: 4 x 4096 rows of 4096 + 4 * 64 bytes; gate, up: 2 x 11008 rows of the
    // same; down: 4096 rows of 11008 + 4 * 172; the LM head 32000 rows of 4352; the embedding
    // (131,072,000) and norms (266,240) at 2 bytes
    const int8 = 32 * (4 * 4096 * 4352 + 2 * 11008 * 4352 + 4096 * 11696) + 32000 * 4352;
    expect(weightBytes(spec, 'int8')).toBe(int8 + 2 * (131_072_000 + 266_240));
    expect(weightBytes(spec, 'int8')).toBe(7_282_696_192); // 0.54x f16's 13,476,831,232
    const s = staticSizing(spec, { memoryBytes: 14 * 2 ** 30, dtype: 'int8', contextLengths: [4096] });
    expect([s.weightBytes, s.kvBytesPerToken, s.fits]).toEqual([7_282_696_192, 524_288, true]);
    expect(staticSizing(spec, { memoryBytes: 14 * 2 ** 30, dtype: 'f16' }).fits).toBe(false);
    // a tied LM head is the embedding's rows for the gather plus an int8 copy for the head
    const tied = modelSpecFromConfig({ ...LLAMA2_7B, tie_word_embeddings: true });
    expect(weightBytes(tied, 'int8')).toBe(weightBytes(spec, 'int8'));
    expect(weightBytes(tied, 'f16')).toBe(weightBytes(spec, 'f16') - 2 * 131_072_000);
  });

  it('a mixture of experts (Qwen3-30B-A3B): every expert resident; int8 quantizes the router and the experts too', () => {
    const spec = modelSpecFromConfig({
      model_type: 'qwen3_moe',
      vocab_size: 151936,
      hidden_size: 2048,
      intermediate_size: 6144,
      num_hidden_layers: 48,
      num_attention_heads: 32,
      num_key_value_heads: 4,
      head_dim: 128,
      max_position_embeddings: 40960,
      num_experts: 128,
      num_experts_per_tok: 8,
      moe_intermediate_size: 768,
      norm_topk_prob: true,
    });
    const params = 30_532_122_624;
    expect(weightBytes(spec, 'f16')).toBe(2 * params);
    // per layer, rows x (K + 4 bytes per 64 of K): q 4096, k and v 512 each, the router 128 and
    // every expert's gate and up (128 x 2 x 768) over K 2048; o 2048 rows of 4096; every
    // expert's down (128 x 2048 rows) of 768; the LM head 151936 rows of 2048; the embedding and
    // the norms (2 x 2048 + 2 x 128 per layer, and the final 2048) at 2 bytes
    const perLayer = (4096 + 2 * 512 + 128 + 128 * 2 * 768) * 2176 + 2048 * 4352 + 128 * 2048 * 816;
    const f16Rest = 2 * (151936 * 2048 + 48 * (2 * 2048 + 2 * 128) + 2048);
    expect(weightBytes(spec, 'int8')).toBe(48 * perLayer + 151936 * 2176 + f16Rest);
    // about 32.6 GB: a 40 GB card holds it in int8, not in f16 (61 GB)
    expect(staticSizing(spec, { memoryBytes: 40e9, dtype: 'int8', contextLengths: [4096] }).fits).toBe(true);
    expect(staticSizing(spec, { memoryBytes: 40e9, dtype: 'f16', contextLengths: [4096] }).fits).toBe(false);
  });

  it('GLM-4.5-Air (glm4_moe): the shared experts and the dense first layer quantized too; the choice bias stays a float vector', () => {
    const spec = modelSpecFromConfig({
      model_type: 'glm4_moe',
      vocab_size: 151552,
      hidden_size: 4096,
      intermediate_size: 10944,
      num_hidden_layers: 46,
      num_attention_heads: 96,
      num_key_value_heads: 8,
      head_dim: 128,
      attention_bias: true,
      moe_intermediate_size: 1408,
      n_routed_experts: 128,
      num_experts_per_tok: 8,
      n_shared_experts: 1,
      first_k_dense_replace: 1,
    });
    // (the choice biases, a buffer in transformers, counted: 45 x 128)
    const params = 106_852_251_264;
    expect(weightBytes(spec, 'f16')).toBe(2 * params);
    // rows x (K + 4 bytes per 64 of K). Every layer: q 12288, k and v 1024 each over K 4096; o
    // 4096 rows of 12288. Layer 0: gate and up 2 x 10944 rows of 4096, down 4096 rows of 10944.
    // Layers 1-45: the router 128 and every expert's and the shared expert's gate and up
    // (129 x 2 x 1408) over 4096, their downs (129 x 4096 rows) of 1408. The LM head 151552
    // rows of 4096. At 2 bytes: the embedding, q/k/v biases (14336 a layer), the norms
    // (2 x 4096 a layer, and the final one) and the routers' choice biases (128 a layer)
    const attention = (12288 + 2 * 1024) * 4352 + 4096 * 13056;
    const dense = attention + 2 * 10944 * 4352 + 4096 * 11628;
    const sparse = attention + (128 + 129 * 2 * 1408) * 4352 + 129 * 4096 * 1496;
    const f16Rest = 2 * (151552 * 4096 + 46 * (14336 + 2 * 4096) + 45 * 128 + 4096);
    expect(weightBytes(spec, 'int8')).toBe(dense + 45 * sparse + 151552 * 4352 + f16Rest);
    // about 112 GB in int8: an H200 (141 GB) holds it, an 80 GB H100 does not
    expect(staticSizing(spec, { memoryBytes: 141e9, dtype: 'int8', contextLengths: [4096] }).fits).toBe(true);
    expect(staticSizing(spec, { memoryBytes: 80e9, dtype: 'int8', contextLengths: [4096] }).fits).toBe(false);
  });

  it('partial last blocks count whole; default contexts run up to the model context', () => {
    const spec = modelSpecFromConfig(LLAMA2_7B);
    const s = staticSizing(spec, { memoryBytes: 80 * 2 ** 30, dtype: 'f16', contextLengths: [1000] });
    expect(s.contexts[0]!.kvBytesPerSequence).toBe(1008 * 524_288); // 63 blocks of 16
    expect(staticSizing(spec, { memoryBytes: 80 * 2 ** 30, dtype: 'f16' }).contexts.map((c) => c.contextTokens)).toEqual([
      512, 1024, 2048, 4096,
    ]);
  });

  it('bandwidth bound: each step reads the weights once and every sequence KV once', () => {
    const spec = modelSpecFromConfig(LLAMA2_7B);
    const s = staticSizing(spec, { memoryBytes: 80 * 2 ** 30, dtype: 'f16', contextLengths: [4096], bandwidthBytesPerS: 2e12 });
    const bytes = 13_476_831_232 + 29 * 4096 * 524_288;
    expect(s.contexts[0]!.tpotLowerBoundMs).toBeCloseTo((bytes / 2e12) * 1000, 9);
    expect(s.contexts[0]!.decodeTokensPerSUpperBound).toBeCloseTo(29 / (bytes / 2e12), 6);
  });

  it('the shipped demo model: 3,083,520 parameters as its README says', async () => {
    const spec = await loadModelSpec('models/demo-stories');
    const s = staticSizing(spec, { memoryBytes: 2 ** 30, dtype: 'f32' });
    expect(s.parameters).toBe(3_083_520);
    expect(s.kvBytesPerToken).toBe(2 * 4 * 4 * 32 * 4);
  });
});
