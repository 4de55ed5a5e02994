/**
 * Uploads a checkpoint to the GPU tensor by tensor, so host memory peaks near the largest
 * tensor (two, where gate and up are fused here) rather than the model.
 *
 * Matmul weights go up as f16 when the adapter has shader-f16 (bf16 and f32 sources are
 * converted by the reader), else f32; norms, biases and RoPE frequencies stay f32.
 * With weightDType 'int8' every matmul weight (q/k/v, o, gate/up, down, the LM head) is
 * quantized on the host as it is read (int8-quant.ts: symmetric, a scale per row and group
 * of k), a few rows at a time from f32, so host memory holds the int8 tensor and one chunk;
 * the embedding table stays f16 (f32 without shader-f16 or with forceF32).
 */
import { prepareEmbeddingTable } from '../../kernels/embedding.js';
import { allocateQuantized, INT8_GROUP_SIZE, quantizeInt8Into, type QuantizedInt8 } from '../../kernels/int8-quant.js';
import { prepareMatmulWeight, type MatmulWeight } from '../../kernels/matmul.js';
import { prepareMoeExperts, type MoeExpertWeight } from '../../kernels/moe-matmul.js';
import type { KernelRuntime } from '../../kernels/runtime.js';
import { tensorBytes, type GpuTensor } from '../../kernels/tensor.js';
import { float32ToF16Bits } from '../model/dtype-convert.js';
import { ropeInvFreq, type TensorRef } from '../model/model-spec.js';
import type { LoadedModelFolder } from '../model-folder.js';
import type { ModelWeights } from '../model/sharded.js';
import type { WeightDTypeOption } from '../types.js';
import type { GpuLayer, GpuModel, GpuModelShape, GpuMoe } from './gpu-model.js';

export interface UploadOptions {
  /** Matmul weights; 'f16' on an adapter without shader-f16 is stored as f32. */
  weightDType: WeightDTypeOption;
  /** int8: k per scale (default INT8_GROUP_SIZE). */
  int8GroupSize?: number;
  /** int8: f32 values read per chunk while quantizing (default 16M; tests make it small to cut tensors into several reads). */
  quantizeChunkValues?: number;
}

/** f32 values read per chunk while quantizing (bounds the host memory of a large tensor's read). */
const QUANTIZE_CHUNK_VALUES = 1 << 24;

/** ref's rows quantized into `out` from row `row0` on, read from f32 `chunkValues` values (whole rows) at a time. */
async function quantizeRows(weights: ModelWeights, ref: TensorRef, out: QuantizedInt8, row0: number, chunkValues: number): Promise<void> {
  const [N, K] = [ref.shape[0]!, ref.shape[1]!];
  const step = Math.max(1, Math.floor(chunkValues / K));
  for (let r = 0; r < N; r += step) {
    const rowCount = Math.min(step, N - r);
    const values = await weights.read(ref.name, 'f32', rowCount === N ? undefined : { rowStart: r, rowCount });
    quantizeInt8Into(values, rowCount, K, out, row0 + r, ref.name);
  }
}

export async function uploadModel(rt: KernelRuntime, folder: LoadedModelFolder, options: UploadOptions): Promise<GpuModel> {
  const { spec, weights } = folder;
  const floatDType = rt.preferredDType === 'f16' && options.weightDType !== 'f32' ? 'f16' : 'f32';
  // matmul weights: int8, or the float dtype (f16 asked for on an adapter without it is f32)
  const dtype = options.weightDType === 'int8' ? 'int8' : options.weightDType === 'f16' && rt.hasF16 ? 'f16' : 'f32';
  const groupSize = options.int8GroupSize ?? INT8_GROUP_SIZE;
  let weightBytes = 0;
  /** Experts a decode token does not read (a mixture-of-experts model's): resident, not in weightBytes. */
  let idleExpertBytes = 0;

  const vector = async (ref: TensorRef): Promise<GpuTensor> => {
    const data = (await weights.read(ref.name, 'f32')) as Float32Array;
    weightBytes += data.byteLength;
    return rt.upload('f32', data, ref.name);
  };
  const readFloats = (name: string, as: 'f16' | 'f32'): Promise<Float32Array | Uint16Array> =>
    as === 'f16' ? weights.read(name, 'f16') : weights.read(name, 'f32');
  /** Tensors stacked along N (q, k and v; gate and up), read as `as`; a single one as it is read. */
  const stackedFloats = async (parts: TensorRef[], as: 'f16' | 'f32'): Promise<Float32Array | Uint16Array> => {
    if (parts.length === 1) return readFloats(parts[0]!.name, as);
    const size = parts.reduce((n, p) => n + p.shape[0]! * p.shape[1]!, 0);
    const data = as === 'f16' ? new Uint16Array(size) : new Float32Array(size);
    let at = 0;
    for (const p of parts) {
      const m = await readFloats(p.name, as);
      data.set(m as never, at);
      at += m.length;
    }
    return data;
  };
  /** A matmul weight's data: read in its float dtype, or quantized (parts stacked along N). */
  const matmulData = async (parts: TensorRef[]): Promise<Float32Array | Uint16Array | QuantizedInt8> => {
    const K = parts[0]!.shape[1]!;
    const N = parts.reduce((n, p) => n + p.shape[0]!, 0);
    if (dtype === 'int8') {
      const q = allocateQuantized(N, K, groupSize);
      let row = 0;
      for (const p of parts) {
        await quantizeRows(weights, p, q, row, options.quantizeChunkValues ?? QUANTIZE_CHUNK_VALUES);
        row += p.shape[0]!;
      }
      return q;
    }
    return stackedFloats(parts, dtype === 'f16' ? 'f16' : 'f32');
  };
  const linear = async (ref: TensorRef, bias?: TensorRef): Promise<MatmulWeight> => {
    const data = await matmulData([ref]);
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
    const data = await matmulData(parts);
    const rows = parts.map((p) => p.shape[0]!);
    const N = rows.reduce((a, b) => a + b, 0);
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

  // int8 (--weight-dtype int8): the experts too, quantized one expert at a time from f32
  const expertsDType = dtype === 'int8' ? 'int8' : floatDType;
  /**
   * A mixture-of-experts MLP: the router as a plain matmul weight, the experts in the matmul
   * dtype (int8 quantized as the dense weights are; f16 storage needs no shader-f16 in
   * moe-matmul.wgsl, but an f32 model keeps f32), each expert's gate and up stacked as the
   * dense MLP's are. Read one expert at a time, so host memory holds one expert's tensors,
   * not the layer's.
   */
  const moeMlp = async (l: (typeof spec.weights.layers)[number]): Promise<GpuMoe> => {
    const moe = spec.moe!;
    const inner = moe.expertIntermediateSize;
    const H = spec.hiddenSize;
    const experts = async (N: number, K: number, parts: (e: number) => TensorRef[], label: string): Promise<MoeExpertWeight> => {
      const w = await prepareMoeExperts(rt, {
        experts: moe.numExperts,
        N,
        K,
        dtype: expertsDType,
        label,
        ...(expertsDType === 'int8' ? { groupSize } : {}),
        // int8 experts are quantized from f32 by prepareMoeExperts
        expertData: (e) => stackedFloats(parts(e), expertsDType === 'f16' ? 'f16' : 'f32'),
      });
      // a token reads topK of the experts
      const read = (w.bytes * moe.topK) / moe.numExperts;
      weightBytes += read;
      idleExpertBytes += w.bytes - read;
      return w;
    };
    return {
      router: await linear(l.router!),
      gateUp: await experts(2 * inner, H, (e) => [l.expertGate![e]!, l.expertUp![e]!], `${l.router!.name}.experts.gate_up`),
      down: await experts(H, inner, (e) => [l.expertDown![e]!], `${l.router!.name}.experts.down`),
      experts: moe.numExperts,
      topK: moe.topK,
      inner,
      routing: {
        normalize: moe.normalizeTopK,
        scoring: moe.scoring,
        ...(l.routerBias ? { choiceBias: await vector(l.routerBias) } : {}),
        groups: moe.groups,
        topkGroup: moe.topkGroup,
        scale: moe.routedScale,
      },
      ...(l.sharedGateProj
        ? {
            // every token reads it whole, like a dense MLP
            shared: {
              gateUp: await stacked([l.sharedGateProj, l.sharedUpProj!]),
              down: await linear(l.sharedDownProj!),
              inner: moe.sharedIntermediateSize,
              ...(l.sharedExpertGate ? { gate: await vector(l.sharedExpertGate) } : {}),
            },
          }
        : {}),
    };
  };

  const invFreq = rt.upload('f32', Float32Array.from(ropeInvFreq(spec.rope)), 'rope.inv-freq');
  const localInvFreq = spec.localRope ? rt.upload('f32', Float32Array.from(ropeInvFreq(spec.localRope)), 'rope.local-inv-freq') : undefined;
  /** Gemma: the table's rows times sqrt(hidden), scaled once here instead of every step. */
  const scaledEmbedding = async (): Promise<Float32Array | Uint16Array> => {
    const values = (await weights.read(spec.weights.embed.name, 'f32')) as Float32Array;
    for (let i = 0; i < values.length; i++) values[i]! *= spec.embeddingScale;
    return floatDType === 'f16' ? float32ToF16Bits(values) : values;
  };
  const layers: GpuLayer[] = [];
  for (const [i, l] of spec.weights.layers.entries()) {
    const sliding = spec.slidingLayers[i]! && spec.slidingWindow !== null;
    layers.push({
      slidingWindow: sliding ? spec.slidingWindow! : 0,
      invFreq: sliding && localInvFreq ? localInvFreq : invFreq,
      inputNorm: await vector(l.inputNorm),
      qkv: await stacked([l.qProj, l.kProj, l.vProj], [l.qBias, l.kBias, l.vBias]),
      qNorm: l.qNorm ? await vector(l.qNorm) : undefined,
      kNorm: l.kNorm ? await vector(l.kNorm) : undefined,
      o: await linear(l.oProj, l.oBias),
      postAttnOutNorm: l.postSelfAttnNorm ? await vector(l.postSelfAttnNorm) : undefined,
      preMlpNorm: await vector(l.postAttentionNorm),
      ...(l.router
        ? { moe: await moeMlp(l) }
        : {
            gateUp: l.gateUpProj ? await linear(l.gateUpProj) : await stacked([l.gateProj!, l.upProj!]),
            down: await linear(l.downProj!),
          }),
      postMlpOutNorm: l.postMlpNorm ? await vector(l.postMlpNorm) : undefined,
    });
  }

  const embedData = spec.embeddingScale === 1 ? await readFloats(spec.weights.embed.name, floatDType) : await scaledEmbedding();
  const embedding = prepareEmbeddingTable(rt, {
    data: embedData,
    vocab: spec.vocabSize,
    dim: spec.hiddenSize,
    dtype: floatDType,
    label: 'embed',
  });
  // a tied LM head is uploaded a second time in the matmul layout (the embedding gather
  // wants rows, the GEMV wants K-major columns)
  const lmHead = spec.weights.lmHead ? await linear(spec.weights.lmHead) : await linear(spec.weights.embed);
  const finalNorm = await vector(spec.weights.finalNorm);

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
    attentionScale: spec.attentionScale,
    attentionSoftcap: spec.attentionSoftcap ?? 0,
    finalLogitSoftcap: spec.finalLogitSoftcap ?? 0,
    moe: spec.moe
      ? {
          experts: spec.moe.numExperts,
          topK: spec.moe.topK,
          inner: spec.moe.expertIntermediateSize,
          sharedInner: spec.moe.sharedIntermediateSize,
        }
      : null,
  };
  const embeddingBytes = embedding.parts.reduce((n, p) => n + tensorBytes(p.tensor), 0);
  const ropeBytes = tensorBytes(invFreq) + (localInvFreq ? tensorBytes(localInvFreq) : 0);
  const residentBytes = weightBytes + idleExpertBytes + embeddingBytes + ropeBytes;
  await rt.sync();
  return { shape, embedding, layers, finalNorm, lmHead, weightBytes, residentBytes };
}
