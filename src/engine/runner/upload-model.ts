/**
 * Uploads a checkpoint to the GPU tensor by tensor, so host memory peaks near the largest
 * tensor (two, where gate and up are fused here) rather than the model.
 *
 * Matmul weights go up as f16 when the adapter has shader-f16 (bf16 and f32 sources are
 * converted by the reader), else f32; norms, biases and RoPE frequencies stay f32.
 */
import { prepareEmbeddingTable } from '../../kernels/embedding.js';
import { prepareMatmulWeight, type MatmulWeight } from '../../kernels/matmul.js';
import type { KernelRuntime } from '../../kernels/runtime.js';
import { tensorBytes, type GpuTensor } from '../../kernels/tensor.js';
import { ropeInvFreq, type TensorRef } from '../model/model-spec.js';
import type { LoadedModelFolder } from '../model-folder.js';
import type { GpuLayer, GpuModel, GpuModelShape } from './gpu-model.js';

export interface UploadOptions {
  weightDType: 'f16' | 'f32';
}

export async function uploadModel(rt: KernelRuntime, folder: LoadedModelFolder, options: UploadOptions): Promise<GpuModel> {
  const { spec, weights } = folder;
  const dtype = options.weightDType === 'f16' && rt.hasF16 ? 'f16' : 'f32';
  let weightBytes = 0;

  const vector = async (ref: TensorRef): Promise<GpuTensor> => {
    const data = (await weights.read(ref.name, 'f32')) as Float32Array;
    weightBytes += data.byteLength;
    return rt.upload('f32', data, ref.name);
  };
  const readMatrix = (name: string): Promise<Float32Array | Uint16Array> =>
    dtype === 'f16' ? weights.read(name, 'f16') : weights.read(name, 'f32');
  const linear = async (ref: TensorRef, bias?: TensorRef): Promise<MatmulWeight> => {
    const data = await readMatrix(ref.name);
    const w = prepareMatmulWeight(rt, {
      data,
      N: ref.shape[0]!,
      K: ref.shape[1]!,
      dtype,
      bias: bias ? ((await weights.read(bias.name, 'f32')) as Float32Array) : undefined,
      label: ref.name,
    });
    weightBytes += w.bytes;
    return w;
  };
  /**
   * Weights stacked along N into one (q, k and v; gate and up): one matmul instead of
   * several. A part without a bias gets zeros where another part has one.
   */
  const stacked = async (parts: TensorRef[], biases: (TensorRef | undefined)[] = []): Promise<MatmulWeight> => {
    const mats: (Float32Array | Uint16Array)[] = [];
    for (const p of parts) mats.push(await readMatrix(p.name));
    const rows = parts.map((p) => p.shape[0]!);
    const N = rows.reduce((a, b) => a + b, 0);
    const data = dtype === 'f16' ? new Uint16Array(N * parts[0]!.shape[1]!) : new Float32Array(N * parts[0]!.shape[1]!);
    let at = 0;
    for (const m of mats) {
      data.set(m as never, at);
      at += m.length;
    }
    let bias: Float32Array | undefined;
    if (biases.some((b) => b !== undefined)) {
      bias = new Float32Array(N);
      let row = 0;
      for (let i = 0; i < parts.length; i++) {
        const b = biases[i];
        if (b) bias.set((await weights.read(b.name, 'f32')) as Float32Array, row);
        row += rows[i]!;
      }
    }
    const w = prepareMatmulWeight(rt, { data, N, K: parts[0]!.shape[1]!, dtype, bias, label: parts.map((p) => p.name).join('+') });
    weightBytes += w.bytes;
    return w;
  };

  const layers: GpuLayer[] = [];
  for (const l of spec.weights.layers) {
    layers.push({
      inputNorm: await vector(l.inputNorm),
      qkv: await stacked([l.qProj, l.kProj, l.vProj], [l.qBias, l.kBias, l.vBias]),
      qNorm: l.qNorm ? await vector(l.qNorm) : undefined,
      kNorm: l.kNorm ? await vector(l.kNorm) : undefined,
      o: await linear(l.oProj, l.oBias),
      postAttnOutNorm: l.postSelfAttnNorm ? await vector(l.postSelfAttnNorm) : undefined,
      preMlpNorm: await vector(l.postAttentionNorm),
      gateUp: l.gateUpProj ? await linear(l.gateUpProj) : await stacked([l.gateProj!, l.upProj!]),
      down: await linear(l.downProj),
      postMlpOutNorm: l.postMlpNorm ? await vector(l.postMlpNorm) : undefined,
    });
  }

  const embedData = await readMatrix(spec.weights.embed.name);
  const embedding = prepareEmbeddingTable(rt, { data: embedData, vocab: spec.vocabSize, dim: spec.hiddenSize, dtype, label: 'embed' });
  // a tied LM head is uploaded a second time in the matmul layout (the embedding gather
  // wants rows, the GEMV wants K-major columns)
  const lmHead = spec.weights.lmHead ? await linear(spec.weights.lmHead) : await linear(spec.weights.embed);
  const finalNorm = await vector(spec.weights.finalNorm);
  const invFreq = rt.upload('f32', Float32Array.from(ropeInvFreq(spec.rope)), 'rope.inv-freq');

  const shape: GpuModelShape = {
    vocabSize: spec.vocabSize,
    hiddenSize: spec.hiddenSize,
    intermediateSize: spec.intermediateSize,
    numLayers: spec.numLayers,
    numHeads: spec.numHeads,
    numKvHeads: spec.numKvHeads,
    headDim: spec.headDim,
    normEps: spec.norm.eps,
    normOnePlus: spec.norm.onePlus,
    ropeLayout: spec.rope.layout,
    rotaryDim: spec.rope.rotaryDim,
    activation: spec.activation,
    slidingWindow: spec.slidingWindow ?? 0,
  };
  const embeddingBytes = embedding.parts.reduce((n, p) => n + tensorBytes(p.tensor), 0);
  const residentBytes = weightBytes + embeddingBytes + tensorBytes(invFreq);
  await rt.sync();
  return { shape, embedding, layers, finalNorm, lmHead, invFreq, weightBytes, residentBytes };
}
