/**
 * Builds the ONNX graph of a BERT encoder with the pooling inside it — bertq's counterpart of
 * bert-as-service's frozen and pruned TensorFlow graph. Only the layers up to the deepest requested
 * pooling layer are emitted, so `poolingLayer: [-12]` on a 12-layer model runs one layer.
 *
 * Two flavours of the same maths:
 *  - plain: standard ONNX ops only (opset 17), runnable by any ONNX runtime;
 *  - fused: ONNX Runtime's transformer ops (com.microsoft Attention, SkipLayerNormalization,
 *    BiasGelu/FastGelu), which run the attention block and the residual+LayerNorm in single kernels.
 * float16 keeps weights and the encoder in half precision; pooling always runs in float32 (its 1e30
 * masking constant and the mean's sums do not fit half precision).
 * int8 keeps everything in float32 except the weight GEMMs, which become com.microsoft
 * DynamicQuantizeMatMul: int8 weights per output column, activations quantized per batch at run time
 * (ONNX Runtime's u8·s8 kernels; measured in bench/model.bench.ts against the float graph and PyTorch).
 * The plain int8 graph runs its encoder layers sequence-first ([S, B, H]), so that the attention reads
 * its heads in place instead of transposing copies of them (attentionSeqFirst, with com.microsoft
 * FusedMatMul); the plain float graphs keep standard ONNX ops only.
 */
import { ModelError, float32ArrayToFloat16 } from '@bertq/protocol';
import { GraphBuilder, MS_DOMAIN, type ModelMeta } from './onnx/builder.js';
import { type AttributeValue, DataType, type ModelFiles } from './onnx/proto.js';
import { int8WeightMax, quantizePerColumn } from './onnx/quantize.js';
import { bertConfigJson } from './config-json.js';
import { resolvePoolingLayers } from './pooling-layers.js';
import type { BertConfig, BertWeights, GraphOptions, LinearWeights, PoolingStrategy } from './types.js';

/** Bumped whenever the emitted graph changes for the same inputs; part of the graph cache key. */
export const GRAPH_VERSION = 2;

export const GRAPH_INPUTS = ['input_ids', 'attention_mask', 'token_type_ids'] as const;
export const GRAPH_OUTPUT = 'embeddings';

/** bert-as-service's masking constants (graph.py): −1e30 for max pooling, +1e−10 in the mean's denominator. */
const MAX_MASK = 1e30;
const MEAN_EPS = 1e-10;
/** Google BERT's additive attention mask for padded positions. */
const ATTENTION_MASK_VALUE = -10000;

/** How many encoder layers a graph with these options needs to compute. */
export function layersNeeded(options: Pick<GraphOptions, 'poolingLayer'>, numLayers: number): number {
  return Math.max(...resolvePoolingLayers(options.poolingLayer, numLayers)) + 1;
}

/** Width of one output vector (per token for NONE). */
export function outputDim(config: BertConfig, options: Pick<GraphOptions, 'poolingLayer' | 'poolingStrategy'>): number {
  const base = config.hiddenSize * options.poolingLayer.length;
  return options.poolingStrategy === 'REDUCE_MEAN_MAX' ? 2 * base : base;
}

export function isTokenLevel(strategy: PoolingStrategy): boolean {
  return strategy === 'NONE';
}

interface Ctx {
  g: GraphBuilder;
  half: boolean;
  /** Weight GEMMs run on int8 weights (DynamicQuantizeMatMul, MatMulIntegerToFloat). */
  int8: boolean;
  /** The largest |int8 weight|: 127, or 64 where the CPU's int8 kernel saturates (int8-kernel.ts). */
  int8Max: number;
  /** The plain encoder layers take and give [S, B, H] rather than [B, S, H]. */
  seqFirst: boolean;
  /** Converts weight data to the graph's float type. */
  w(prefix: string, data: Float32Array, dims: number[]): string;
  scalar(v: number): string;
}

function concatKernels(
  parts: LinearWeights[],
  scales: number[],
): { kernel: Float32Array; bias: Float32Array; inDim: number; outDim: number } {
  const inDim = parts[0]!.kernel.shape[0]!;
  const outs = parts.map((p) => p.kernel.shape[1]!);
  const outDim = outs.reduce((a, b) => a + b, 0);
  const kernel = new Float32Array(inDim * outDim);
  const bias = new Float32Array(outDim);
  let col = 0;
  parts.forEach((p, k) => {
    const o = outs[k]!;
    const s = scales[k]!;
    const src = p.kernel.data;
    for (let i = 0; i < inDim; i++) {
      const row = i * outDim + col;
      const srow = i * o;
      for (let j = 0; j < o; j++) kernel[row + j] = src[srow + j]! * s;
    }
    for (let j = 0; j < o; j++) bias[col + j] = p.bias.data[j]! * s;
    col += o;
  });
  return { kernel, bias, inDim, outDim };
}

/**
 * x · kernel (+ bias): the graph's weight GEMM. Under int8 it is one DynamicQuantizeMatMul, which also
 * adds the bias; otherwise MatMul then Add (ORT fuses the pair into one Gemm-like kernel).
 */
function matmul(
  c: Ctx,
  x: string,
  kernel: Float32Array,
  dims: readonly number[],
  name: string,
  bias?: Float32Array,
): string {
  const [inDim, outDim] = dims as [number, number];
  if (c.int8) {
    const inputs = [x, ...int8Kernel(c, kernel, inDim, outDim, name)];
    if (bias) inputs.push(c.w(`${name}_bias`, bias, [outDim]));
    return c.g.node('DynamicQuantizeMatMul', inputs, { domain: MS_DOMAIN, outputs: [name] })[0]!;
  }
  const product = c.g.op('MatMul', [x, c.w(`${name}_kernel`, kernel, [inDim, outDim])], undefined, `${name}_matmul`);
  return bias ? c.g.op('Add', [product, c.w(`${name}_bias`, bias, [outDim])], undefined, name) : product;
}

/**
 * A weight matrix as the int8 GEMMs take it: its int8 values, one scale per output column, and no
 * zero point (the quantization is symmetric).
 */
function int8Kernel(c: Ctx, kernel: Float32Array, inDim: number, outDim: number, name: string): string[] {
  const quantized = quantizePerColumn(kernel, inDim, outDim, c.int8Max);
  return [
    c.g.initializer(`${name}_kernel_int8`, quantized.values, [inDim, outDim]),
    c.g.initializer(`${name}_kernel_scale`, quantized.scales, [outDim]),
    '',
  ];
}

/** Splits a fused [.., 3H] projection into q, k and v, each [.., H]. */
function splitQkv(c: Ctx, qkv: string, hidden: number, p: string): [string, string, string] {
  return c.g.node('Split', [qkv, c.g.int64([hidden, hidden, hidden])], {
    attributes: { axis: -1 },
    outputs: [`${p}_q`, `${p}_k`, `${p}_v`],
  }) as [string, string, string];
}

function linear(c: Ctx, x: string, lw: LinearWeights, name: string): string {
  return matmul(c, x, lw.kernel.data, lw.kernel.shape, name, lw.bias.data);
}

function gelu(c: Ctx, x: string, act: BertConfig['hiddenAct']): string {
  const g = c.g;
  if (act === 'relu') return g.op('Relu', [x]);
  if (act === 'gelu') {
    // 0.5·x·(1 + erf(x/√2)) — Google BERT's exact gelu; ORT fuses this pattern into one Gelu kernel.
    const e = g.op('Erf', [g.op('Div', [x, c.scalar(Math.SQRT2)])]);
    return g.op('Mul', [g.op('Mul', [x, c.scalar(0.5)]), g.op('Add', [e, c.scalar(1)])], undefined, 'gelu');
  }
  // tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
  const x3 = g.op('Mul', [g.op('Mul', [x, x]), x]);
  const inner = g.op('Mul', [
    g.op('Add', [x, g.op('Mul', [x3, c.scalar(0.044715)])]),
    c.scalar(Math.sqrt(2 / Math.PI)),
  ]);
  return g.op(
    'Mul',
    [g.op('Mul', [x, c.scalar(0.5)]), g.op('Add', [g.op('Tanh', [inner]), c.scalar(1)])],
    undefined,
    'gelu_new',
  );
}

function layerNorm(
  c: Ctx,
  x: string,
  ln: { gamma: { data: Float32Array }; beta: { data: Float32Array } },
  eps: number,
  name: string,
): string {
  const gamma = c.w(`${name}_gamma`, ln.gamma.data, [ln.gamma.data.length]);
  const beta = c.w(`${name}_beta`, ln.beta.data, [ln.beta.data.length]);
  return c.g.op('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: { float: eps } }, name);
}

function skipLayerNorm(
  c: Ctx,
  x: string,
  skip: string,
  ln: { gamma: { data: Float32Array }; beta: { data: Float32Array } },
  bias: Float32Array,
  eps: number,
  name: string,
): string {
  const gamma = c.w(`${name}_gamma`, ln.gamma.data, [ln.gamma.data.length]);
  const beta = c.w(`${name}_beta`, ln.beta.data, [ln.beta.data.length]);
  const b = c.w(`${name}_bias`, bias, [bias.length]);
  return c.g.node('SkipLayerNormalization', [x, skip, gamma, beta, b], {
    domain: MS_DOMAIN,
    attributes: { epsilon: { float: eps } },
    outputs: [name],
  })[0]!;
}

/**
 * q, k and v, each [.., H], the query already scaled by 1/√d (folded into its weights).
 * float: one [H, 3H] GEMM, then a Split. int8: the layer input quantized once, then one
 * MatMulIntegerToFloat per projection: no Split to copy the [.., 3H] product apart (measured at seq
 * 25 batch 64: 5% faster than one DynamicQuantizeMatMul and a Split; 4% slower at batch 1).
 */
function projectQkv(c: Ctx, x: string, lw: BertWeights['layers'][number], headDim: number, p: string): string[] {
  const scales = [1 / Math.sqrt(headDim), 1, 1];
  if (!c.int8) {
    const qkv = concatKernels([lw.query, lw.key, lw.value], scales);
    const fused = matmul(c, x, qkv.kernel, [qkv.inDim, qkv.outDim], `${p}_qkv`, qkv.bias);
    return splitQkv(c, fused, qkv.outDim / 3, p);
  }
  const [xq, xScale, xZero] = c.g.node('DynamicQuantizeLinear', [x], {
    outputs: [`${p}_x_u8`, `${p}_x_scale`, `${p}_x_zero`],
  });
  return [lw.query, lw.key, lw.value].map((lin, k) => {
    const name = `${p}_${'qkv'[k]}`;
    const [inDim, outDim] = lin.kernel.shape as [number, number];
    const s = scales[k]!;
    const kernel = s === 1 ? lin.kernel.data : lin.kernel.data.map((v) => v * s);
    const bias = s === 1 ? lin.bias.data : lin.bias.data.map((v) => v * s);
    const [values, scale, zero] = int8Kernel(c, kernel, inDim, outDim, name);
    return c.g.node(
      'MatMulIntegerToFloat',
      [xq!, values!, xScale!, scale!, xZero!, zero!, c.w(`${name}_bias`, bias, [outDim])],
      { domain: MS_DOMAIN, outputs: [name] },
    )[0]!;
  });
}

/**
 * softmax(q·kᵀ + mask)·v over [B, S, H] inputs: each of q, k and v is reshaped to heads and
 * transposed to [B, heads, S, d] (a copy), as ONNX MatMul wants its batch dimensions first.
 */
function attentionBatchFirst(
  c: Ctx,
  q: string,
  k: string,
  v: string,
  maskAdd: string,
  heads: number,
  p: string,
): string {
  const g = c.g;
  const hidden = g.int64([0, 0, -1]);
  const heads4 = g.int64([0, 0, heads, -1]);
  const split = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, heads4])], { perm });
  const scores = g.op(
    'Add',
    [g.op('MatMul', [split(q, [0, 2, 1, 3]), split(k, [0, 2, 3, 1])]), maskAdd],
    undefined,
    `${p}_scores`,
  );
  const probs = g.op('Softmax', [scores], { axis: -1 }, `${p}_probs`);
  const context = g.op('MatMul', [probs, split(v, [0, 2, 1, 3])]);
  return g.op('Reshape', [g.op('Transpose', [context], { perm: [0, 2, 1, 3] }), hidden]);
}

/**
 * The same over [S, B, H] inputs, without copying q, k or v: reshaped to [S, B, heads, d], they are
 * read as [B, heads, S, d] by com.microsoft FusedMatMul's transBatch, which only changes the strides
 * its GEMMs read with. The context comes out [B, heads, S, d] and is transposed once, back to
 * [S, B, H]. With projectQkv's int8 split, measured at seq 25, batch 64 on BERT-base against the
 * batch-first graph, alternating in one process: int8 1.21× (batch 1: 0.98×; float32 would gain 1.06×).
 */
function attentionSeqFirst(c: Ctx, q: string, k: string, v: string, maskAdd: string, heads: number, p: string): string {
  const g = c.g;
  const heads4 = g.int64([0, 0, heads, -1]);
  const perHead = (t: string) => g.op('Reshape', [t, heads4]);
  const fusedMatMul = (a: string, b: string, attributes: Record<string, AttributeValue>, name: string) =>
    g.node('FusedMatMul', [a, b], { domain: MS_DOMAIN, attributes, outputs: [name] })[0]!;
  const products = fusedMatMul(perHead(q), perHead(k), { transBatchA: 1, transBatchB: 1, transB: 1 }, `${p}_qk`);
  const probs = g.op(
    'Softmax',
    [g.op('Add', [products, maskAdd], undefined, `${p}_scores`)],
    { axis: -1 },
    `${p}_probs`,
  );
  const context = fusedMatMul(probs, perHead(v), { transBatchB: 1 }, `${p}_context`);
  return g.op('Reshape', [g.op('Transpose', [context], { perm: [2, 0, 1, 3] }), g.int64([0, 0, -1])]);
}

function encoderLayerPlain(c: Ctx, x: string, maskAdd: string, weights: BertWeights, i: number): string {
  const { config } = weights;
  const lw = weights.layers[i]!;
  const g = c.g;
  const heads = config.numAttentionHeads;
  const p = `layer${i}`;
  const [q, k, v] = projectQkv(c, x, lw, config.hiddenSize / heads, p) as [string, string, string];
  const attention = c.seqFirst ? attentionSeqFirst : attentionBatchFirst;
  const merged = attention(c, q, k, v, maskAdd, heads, p);
  const attnOut = linear(c, merged, lw.attentionOutput, `${p}_attn_out`);
  const h = layerNorm(c, g.op('Add', [attnOut, x]), lw.attentionLayerNorm, config.layerNormEps, `${p}_attn_ln`);
  const inter = gelu(c, linear(c, h, lw.intermediate, `${p}_intermediate`), config.hiddenAct);
  const out = linear(c, inter, lw.output, `${p}_output`);
  return layerNorm(c, g.op('Add', [out, h]), lw.outputLayerNorm, config.layerNormEps, `${p}_out_ln`);
}

/**
 * The attention block as one fused kernel. float: com.microsoft Attention (QKV GEMM included).
 * int8: the QKV GEMM is a DynamicQuantizeMatMul (Attention only takes float weights), then
 * com.microsoft MultiHeadAttention does the rest.
 */
function fusedAttention(c: Ctx, x: string, maskIndex: string, weights: BertWeights, i: number): string {
  const { config } = weights;
  const lw = weights.layers[i]!;
  const g = c.g;
  const p = `layer${i}`;
  const heads = config.numAttentionHeads;
  const qkv = concatKernels([lw.query, lw.key, lw.value], [1, 1, 1]);
  if (!c.int8) {
    return g.node(
      'Attention',
      [
        x,
        c.w(`${p}_qkv_kernel`, qkv.kernel, [qkv.inDim, qkv.outDim]),
        c.w(`${p}_qkv_bias`, qkv.bias, [qkv.outDim]),
        maskIndex,
      ],
      {
        domain: MS_DOMAIN,
        attributes: { num_heads: heads, mask_filter_value: { float: ATTENTION_MASK_VALUE } },
        outputs: [`${p}_attention`],
      },
    )[0]!;
  }
  const projected = matmul(c, x, qkv.kernel, [qkv.inDim, qkv.outDim], `${p}_qkv`, qkv.bias);
  const [q, k, v] = splitQkv(c, projected, config.hiddenSize, p);
  return g.node('MultiHeadAttention', [q, k, v, '', maskIndex], {
    domain: MS_DOMAIN,
    attributes: { num_heads: heads, mask_filter_value: { float: ATTENTION_MASK_VALUE } },
    outputs: [`${p}_attention`],
  })[0]!;
}

function encoderLayerFused(c: Ctx, x: string, maskIndex: string, weights: BertWeights, i: number): string {
  const { config } = weights;
  const lw = weights.layers[i]!;
  const g = c.g;
  const p = `layer${i}`;
  const attn = fusedAttention(c, x, maskIndex, weights, i);
  const h = skipLayerNorm(
    c,
    matmul(c, attn, lw.attentionOutput.kernel.data, lw.attentionOutput.kernel.shape, `${p}_attn_out`),
    x,
    lw.attentionLayerNorm,
    lw.attentionOutput.bias.data,
    config.layerNormEps,
    `${p}_attn_ln`,
  );
  const interB = c.w(`${p}_intermediate_bias`, lw.intermediate.bias.data, lw.intermediate.bias.shape);
  const pre = matmul(c, h, lw.intermediate.kernel.data, lw.intermediate.kernel.shape, `${p}_intermediate`);
  let inter: string;
  if (config.hiddenAct === 'gelu')
    inter = g.node('BiasGelu', [pre, interB], { domain: MS_DOMAIN, outputs: [`${p}_gelu`] })[0]!;
  else if (config.hiddenAct === 'gelu_new')
    inter = g.node('FastGelu', [pre, interB], { domain: MS_DOMAIN, outputs: [`${p}_gelu`] })[0]!;
  else inter = g.op('Relu', [g.op('Add', [pre, interB])]);
  return skipLayerNorm(
    c,
    matmul(c, inter, lw.output.kernel.data, lw.output.kernel.shape, `${p}_output`),
    h,
    lw.outputLayerNorm,
    lw.output.bias.data,
    config.layerNormEps,
    `${p}_out_ln`,
  );
}

function pool(
  c: Ctx,
  layerOutputs: string[],
  maskF: string,
  mask: string,
  weights: BertWeights,
  options: GraphOptions,
  dim: number,
): string {
  const g = c.g;
  const f32 = (t: string) => (c.half ? g.op('Cast', [t], { to: DataType.FLOAT }) : t);
  const one = (v: number) => g.scalar(v, false, float32ArrayToFloat16);
  const m3 = g.op('Unsqueeze', [maskF, g.int64([-1])], undefined, 'mask3'); // [B,S,1]

  if (options.poolingStrategy === 'CLS_POOLED') {
    if (!weights.pooler)
      throw new ModelError(
        'pooling_strategy CLS_POOLED needs the pooler weights (bert/pooler/dense), which this model lacks',
      );
    const pooler = weights.pooler;
    const pooled = layerOutputs.map((l, k) => {
      const cls = g.op('Gather', [l, g.int64([0], [])], { axis: 1 }); // [B,H]
      return f32(g.op('Tanh', [linear(c, cls, pooler, `pooler${k}`)]));
    });
    return pooled.length === 1 ? pooled[0]! : g.op('Concat', pooled, { axis: -1 });
  }

  const x = f32(
    layerOutputs.length === 1 ? layerOutputs[0]! : g.op('Concat', layerOutputs, { axis: -1 }, 'pooling_layers'),
  );
  switch (options.poolingStrategy) {
    case 'NONE':
      return g.op('Mul', [x, m3], undefined, 'masked_tokens');
    case 'CLS_TOKEN':
    case 'FIRST_TOKEN':
      return g.op('Gather', [x, g.int64([0], [])], { axis: 1 }, 'first_token');
    case 'SEP_TOKEN':
    case 'LAST_TOKEN': {
      // index of the last unmasked position: Σmask − 1, gathered per row across the feature axis
      const last = g.op('Sub', [g.op('ReduceSum', [mask, g.int64([1])], { keepdims: 1 }), g.int64([1], [])]); // [B,1]
      const idx = g.op('Expand', [
        g.op('Unsqueeze', [last, g.int64([-1])]),
        g.op('Concat', [g.op('Shape', [last]), g.int64([dim])], { axis: 0 }),
      ]);
      return g.op('Squeeze', [g.op('GatherElements', [x, idx], { axis: 1 }), g.int64([1])], undefined, 'last_token');
    }
    case 'REDUCE_MEAN':
    case 'REDUCE_MAX':
    case 'REDUCE_MEAN_MAX': {
      const parts: string[] = [];
      if (options.poolingStrategy !== 'REDUCE_MAX') {
        const sum = g.op('ReduceSum', [g.op('Mul', [x, m3]), g.int64([1])], { keepdims: 0 });
        const count = g.op('Add', [g.op('ReduceSum', [maskF, g.int64([1])], { keepdims: 1 }), one(MEAN_EPS)]);
        parts.push(g.op('Div', [sum, count], undefined, 'mean'));
      }
      if (options.poolingStrategy !== 'REDUCE_MEAN') {
        const penalty = g.op('Mul', [g.op('Sub', [one(1), m3]), one(MAX_MASK)]);
        parts.push(g.op('ReduceMax', [g.op('Sub', [x, penalty])], { axes: [1], keepdims: 0 }, 'max'));
      }
      return parts.length === 1 ? parts[0]! : g.op('Concat', parts, { axis: -1 });
    }
  }
}

/** Serialises the graph for `weights` (which must hold at least the layers the options need). */
export interface BuildGraphExtras {
  producerVersion?: string;
  /** Name of the graph output (default 'embeddings'); tests use 'last_hidden_state' to mimic a foreign export. */
  outputName?: string;
  /** Leave out bertq's metadata (config, options), as a graph exported by another tool would. */
  bare?: boolean;
}

export function buildBertGraph(weights: BertWeights, options: GraphOptions, extras: BuildGraphExtras = {}): Uint8Array {
  const { g, meta } = composeBertGraph(weights, options, extras);
  return g.build(meta);
}

/**
 * The same graph with its weights in a data file named `dataLocation`, to be written beside the model
 * file: ONNX Runtime can then map them from the file instead of copying them into each process (the
 * graph cache stores graphs so; see docs/benchmarks.md, memory.bench).
 */
export function buildBertGraphFiles(
  weights: BertWeights,
  options: GraphOptions,
  dataLocation: string,
  extras: BuildGraphExtras = {},
): ModelFiles {
  const { g, meta } = composeBertGraph(weights, options, extras);
  return g.buildWithExternalData(meta, dataLocation);
}

function composeBertGraph(
  weights: BertWeights,
  options: GraphOptions,
  extras: BuildGraphExtras,
): { g: GraphBuilder; meta: ModelMeta } {
  const { config } = weights;
  const absLayers = resolvePoolingLayers(options.poolingLayer, config.numHiddenLayers);
  const needed = Math.max(...absLayers) + 1;
  if (weights.layers.length < needed) {
    throw new ModelError(`graph needs ${needed} encoder layers but only ${weights.layers.length} were loaded`);
  }
  if (config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new ModelError(
      `hidden_size ${config.hiddenSize} is not a multiple of num_attention_heads ${config.numAttentionHeads}`,
    );
  }

  const g = new GraphBuilder();
  const half = options.precision === 'float16';
  const int8 = options.precision === 'int8';
  // Only int8, which needs ONNX Runtime's own ops anyway: the plain float graphs stay standard ONNX
  // (sequence-first would make float32 1.06× faster at the price of a com.microsoft op).
  const seqFirst = int8 && !options.fused;
  const c: Ctx = {
    g,
    half,
    int8,
    int8Max: int8WeightMax(options.int8WeightBits ?? 8),
    seqFirst,
    w: (prefix, data, dims) => g.initializer(prefix, half ? float32ArrayToFloat16(data) : data, dims),
    scalar: (v) => g.scalar(v, half, float32ArrayToFloat16),
  };

  const inputIds = g.input('input_ids', DataType.INT64, ['batch', 'sequence']);
  const mask = g.input('attention_mask', DataType.INT64, ['batch', 'sequence']);
  const typeIds = g.input('token_type_ids', DataType.INT64, ['batch', 'sequence']);

  // Embeddings: word + position + token type, then LayerNorm.
  const emb = weights.embeddings;
  const words = g.op('Gather', [c.w('word_embeddings', emb.word.data, emb.word.shape), inputIds], { axis: 0 }, 'words');
  const seqLen = g.op('Gather', [g.op('Shape', [inputIds]), g.int64([1])], { axis: 0 }, 'seq_len'); // [1]
  const positions = g.op(
    'Slice',
    [c.w('position_embeddings', emb.position.data, emb.position.shape), g.int64([0]), seqLen, g.int64([0])],
    undefined,
    'positions',
  );
  const types = g.op(
    'Gather',
    [c.w('token_type_embeddings', emb.tokenType.data, emb.tokenType.shape), typeIds],
    { axis: 0 },
    'types',
  );
  let x = layerNorm(
    c,
    g.op('Add', [g.op('Add', [words, positions]), types]),
    emb.layerNorm,
    config.layerNormEps,
    'embeddings_ln',
  );

  const maskF = g.op('Cast', [mask], { to: DataType.FLOAT }, 'mask_f'); // [B,S] float32, for pooling
  let attentionMask: string;
  if (options.fused) {
    attentionMask = g.op('Cast', [mask], { to: DataType.INT32 }, 'mask_index'); // raw [B,S] mask, 1 = attend
  } else {
    const maskT = half ? g.op('Cast', [mask], { to: DataType.FLOAT16 }) : maskF;
    const add = g.op('Mul', [g.op('Sub', [c.scalar(1), maskT]), c.scalar(ATTENTION_MASK_VALUE)]);
    attentionMask = g.op('Unsqueeze', [add, g.int64([1, 2])], undefined, 'mask_add'); // [B,1,1,S]
  }

  const outputs: string[] = [];
  if (seqFirst) x = g.op('Transpose', [x], { perm: [1, 0, 2] }, 'sequence_first');
  for (let i = 0; i < needed; i++) {
    x = options.fused
      ? encoderLayerFused(c, x, attentionMask, weights, i)
      : encoderLayerPlain(c, x, attentionMask, weights, i);
    outputs.push(x);
  }

  const dim = outputDim(config, options);
  let pooled = pool(
    c,
    absLayers.map((l) => (seqFirst ? g.op('Transpose', [outputs[l]!], { perm: [1, 0, 2] }) : outputs[l]!)),
    maskF,
    mask,
    weights,
    options,
    dim,
  );
  if (options.normalize) {
    const norm = g.op('Sqrt', [g.op('ReduceSumSquare', [pooled], { axes: [-1], keepdims: 1 })]);
    pooled = g.op(
      'Div',
      [pooled, g.op('Max', [norm, g.scalar(1e-12, false, float32ArrayToFloat16)])],
      undefined,
      'normalized',
    );
  }
  const shape = isTokenLevel(options.poolingStrategy) ? ['batch', 'sequence', dim] : ['batch', dim];
  g.expose(pooled, extras.outputName ?? GRAPH_OUTPUT, DataType.FLOAT, shape);

  const meta: ModelMeta = {
    graphName: 'bertq_encoder',
    opsets:
      options.fused || int8
        ? [
            { domain: '', version: 17 },
            { domain: MS_DOMAIN, version: 1 },
          ]
        : [{ domain: '', version: 17 }],
    producerVersion: extras.producerVersion ?? '0.1.0',
    metadata: extras.bare
      ? {}
      : {
          'bertq.graph_version': String(GRAPH_VERSION),
          'bertq.options': JSON.stringify(options),
          'bertq.config': JSON.stringify(bertConfigJson(config, 'huggingface')),
          'bertq.output_dim': String(dim),
        },
  };
  return { g, meta };
}
