/**
 * The correctness oracle: a plain TypeScript BERT forward pass and bert-as-service's pooling, written
 * to be obviously right rather than fast. The ONNX graphs bertq builds are tested against it.
 *
 * Forward pass = Google's modeling.py (BertModel, is_training=False); pooling = bert-as-service's
 * server/graph.py (mul_mask, minus_mask, masked_reduce_mean, masked_reduce_max, layer concat).
 * Intermediate activations are kept in float64 and every dot product accumulates in float64, so the
 * oracle is closer to the exact result than any float32 runtime; outputs are rounded to float32.
 */
import { BadRequestError, ModelError, TooLongError } from '@bertq/protocol';
import { resolvePoolingLayers } from './pooling-layers.js';
import type { BertConfig, BertWeights, LayerNormWeights, LinearWeights, PoolingStrategy } from './types.js';

/** Integer ids as the tokenizer produces them (BigInt64Array) or as plain numbers (hand-made tests). */
export type IdArray = BigInt64Array | ArrayLike<number>;

/** The inputs of one padded batch, row-major [rows, seqLen]. A `TokenizedBatch` fits this shape. */
export interface ReferenceBatch {
  rows: number;
  seqLen: number;
  inputIds: IdArray;
  /** 1 for a real token, 0 for padding (and, with bert-as-service's mask_cls_sep, for [CLS]/[SEP]). */
  attentionMask: IdArray;
  tokenTypeIds: IdArray;
}

export interface ReferencePoolOptions {
  poolingStrategy: PoolingStrategy;
  /**
   * Encoder layers to pool, Python-style over all `numHiddenLayers` layers of the model: -1 is the
   * last layer, -2 the one before, 0 the first encoder layer. Several layers are concatenated on the
   * feature axis, in this order, before pooling.
   */
  poolingLayer: number[];
  /** Divide each output vector (each token vector for NONE) by max(‖v‖₂, 1e-12). */
  normalize?: boolean;
}

/** What pooling needs of a model: its shape, and the pooler for CLS_POOLED. */
export interface PoolingWeights {
  config: Pick<BertConfig, 'hiddenSize' | 'numHiddenLayers'>;
  pooler?: LinearWeights | undefined;
}

export interface PooledOutput {
  /** Row-major data of `shape`. */
  data: Float32Array;
  /** [rows, D] for sentence vectors, [rows, seqLen, D] for NONE. */
  shape: number[];
}

// Google BERT's additive attention mask for padded positions (not -inf: a fully masked row stays finite).
const MASKED_SCORE = -10000;
// bert-as-service's minus_mask offset and masked_reduce_mean jitter.
const MAX_POOL_OFFSET = 1e30;
const MEAN_POOL_JITTER = 1e-10;
const NORMALIZE_MIN_NORM = 1e-12;

// ---------------------------------------------------------------------------------------------------
// erf and the activations
// ---------------------------------------------------------------------------------------------------

const TWO_OVER_SQRT_PI = 1.1283791670955126;
const ONE_OVER_SQRT_PI = 0.5641895835477563;
/** Terms of the erfc continued fraction: at |x| >= 3 they give ~1e-16 relative error. */
const ERFC_CF_TERMS = 60;

/**
 * The error function to about 1e-15 absolute error (cheap approximations such as
 * Abramowitz–Stegun 7.1.26, error ~1e-7, are visible at the tolerances the oracle is used at).
 * |x| < 3: the Maclaurin series (alternating, at most ~3 digits lost to cancellation);
 * |x| >= 3: 1 − erfc(x) with erfc from its Laplace continued fraction, evaluated bottom-up.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax === 0) return x;
  if (ax < 3) {
    // erf(x) = 2/√π · Σ (-1)^n x^(2n+1) / (n! (2n+1))
    const x2 = x * x;
    let term = x; // (-1)^n x^(2n+1) / n!
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const contribution = term / (2 * n + 1);
      sum += contribution;
      if (Math.abs(contribution) < 1e-17 * Math.abs(sum)) break;
    }
    return TWO_OVER_SQRT_PI * sum;
  }
  if (ax > 6) return x > 0 ? 1 : -1; // erfc(6) ≈ 2e-17: below double resolution next to 1
  // erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
  let tail = ax;
  for (let k = ERFC_CF_TERMS; k >= 1; k--) tail = ax + k / 2 / tail;
  const erfc = (Math.exp(-ax * ax) * ONE_OVER_SQRT_PI) / tail;
  return x > 0 ? 1 - erfc : erfc - 1;
}

const SQRT_HALF = Math.SQRT1_2;
const SQRT_TWO_OVER_PI = Math.sqrt(2 / Math.PI);

function activation(name: BertConfig['hiddenAct']): (x: number) => number {
  switch (name) {
    case 'gelu':
      return (x) => 0.5 * x * (1 + erf(x * SQRT_HALF));
    case 'gelu_new':
      return (x) => 0.5 * x * (1 + Math.tanh(SQRT_TWO_OVER_PI * (x + 0.044715 * x * x * x)));
    case 'relu':
      return (x) => Math.max(x, 0);
    default:
      throw new ModelError(
        `reference forward: unsupported hidden_act '${String(name)}' (expected gelu, gelu_new or relu)`,
      );
  }
}

// ---------------------------------------------------------------------------------------------------
// Building blocks on [tokens, features] row-major float64 matrices
// ---------------------------------------------------------------------------------------------------

/** y = x · kernel + bias, kernel [in, out]; float64 accumulation. */
function linear(x: Float64Array, tokens: number, w: LinearWeights): Float64Array {
  const [inSize, outSize] = w.kernel.shape as [number, number];
  const kernel = w.kernel.data;
  const bias = w.bias.data;
  const y = new Float64Array(tokens * outSize);
  for (let t = 0; t < tokens; t++) {
    const yOff = t * outSize;
    for (let o = 0; o < outSize; o++) y[yOff + o] = bias[o]!;
    const xOff = t * inSize;
    for (let i = 0; i < inSize; i++) {
      const xi = x[xOff + i]!;
      const kOff = i * outSize;
      for (let o = 0; o < outSize; o++) y[yOff + o] += xi * kernel[kOff + o]!;
    }
  }
  return y;
}

/** LayerNorm over the last axis, in place: (x − mean) / sqrt(var + eps) · gamma + beta (biased variance). */
function layerNormInPlace(x: Float64Array, tokens: number, width: number, ln: LayerNormWeights, eps: number): void {
  const gamma = ln.gamma.data;
  const beta = ln.beta.data;
  for (let t = 0; t < tokens; t++) {
    const off = t * width;
    let mean = 0;
    for (let i = 0; i < width; i++) mean += x[off + i]!;
    mean /= width;
    let variance = 0;
    for (let i = 0; i < width; i++) {
      const d = x[off + i]! - mean;
      variance += d * d;
    }
    variance /= width;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < width; i++) x[off + i] = (x[off + i]! - mean) * inv * gamma[i]! + beta[i]!;
  }
}

function addInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i]!;
}

// ---------------------------------------------------------------------------------------------------
// Forward pass
// ---------------------------------------------------------------------------------------------------

function idAt(ids: IdArray, i: number): number {
  const v = ids[i];
  return typeof v === 'bigint' ? Number(v) : (v as number);
}

function checkBatch(config: BertConfig, batch: ReferenceBatch): void {
  const { rows, seqLen } = batch;
  if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(seqLen) || seqLen < 1) {
    throw new BadRequestError(
      `reference forward: rows and seqLen must be positive integers, got rows=${rows} seqLen=${seqLen}`,
    );
  }
  if (seqLen > config.maxPositionEmbeddings) {
    throw new TooLongError(
      `reference forward: seqLen ${seqLen} is longer than the model's max_position_embeddings ${config.maxPositionEmbeddings}`,
    );
  }
  const expected = rows * seqLen;
  for (const [name, arr] of [
    ['inputIds', batch.inputIds],
    ['attentionMask', batch.attentionMask],
    ['tokenTypeIds', batch.tokenTypeIds],
  ] as const) {
    if (arr.length !== expected) {
      throw new BadRequestError(
        `reference forward: ${name} has ${arr.length} entries, expected rows*seqLen = ${rows}*${seqLen} = ${expected}`,
      );
    }
  }
  for (let i = 0; i < expected; i++) {
    const row = Math.floor(i / seqLen);
    const pos = i % seqLen;
    const id = idAt(batch.inputIds, i);
    if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) {
      throw new BadRequestError(
        `reference forward: row ${row} position ${pos}: token id ${id} is outside the vocabulary [0, ${config.vocabSize})`,
      );
    }
    const type = idAt(batch.tokenTypeIds, i);
    if (!Number.isInteger(type) || type < 0 || type >= config.typeVocabSize) {
      throw new BadRequestError(
        `reference forward: row ${row} position ${pos}: token type ${type} is outside [0, ${config.typeVocabSize})`,
      );
    }
  }
}

/** word + position + token_type embeddings, then LayerNorm. */
function embed(weights: BertWeights, batch: ReferenceBatch): Float64Array {
  const { config } = weights;
  const h = config.hiddenSize;
  const { rows, seqLen } = batch;
  const { word, position, tokenType, layerNorm } = weights.embeddings;
  const x = new Float64Array(rows * seqLen * h);
  for (let t = 0; t < rows * seqLen; t++) {
    const pos = t % seqLen;
    const wOff = idAt(batch.inputIds, t) * h;
    const pOff = pos * h;
    const ttOff = idAt(batch.tokenTypeIds, t) * h;
    for (let i = 0; i < h; i++) {
      x[t * h + i] = word.data[wOff + i]! + position.data[pOff + i]! + tokenType.data[ttOff + i]!;
    }
  }
  layerNormInPlace(x, rows * seqLen, h, layerNorm, config.layerNormEps);
  return x;
}

/** Multi-head self-attention context (before the output dense), [tokens, hidden]. */
function attentionContext(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  mask: Float64Array,
  rows: number,
  seqLen: number,
  hidden: number,
  heads: number,
): Float64Array {
  const headDim = hidden / heads;
  const invSqrt = 1 / Math.sqrt(headDim);
  const context = new Float64Array(rows * seqLen * hidden);
  const scores = new Float64Array(seqLen);
  for (let b = 0; b < rows; b++) {
    for (let hd = 0; hd < heads; hd++) {
      const featOff = hd * headDim;
      for (let i = 0; i < seqLen; i++) {
        const qOff = (b * seqLen + i) * hidden + featOff;
        let max = -Infinity;
        for (let j = 0; j < seqLen; j++) {
          const kOff = (b * seqLen + j) * hidden + featOff;
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += q[qOff + d]! * k[kOff + d]!;
          const s = dot * invSqrt + (1 - mask[b * seqLen + j]!) * MASKED_SCORE;
          scores[j] = s;
          if (s > max) max = s;
        }
        let denom = 0;
        for (let j = 0; j < seqLen; j++) {
          const e = Math.exp(scores[j]! - max);
          scores[j] = e;
          denom += e;
        }
        const cOff = (b * seqLen + i) * hidden + featOff;
        for (let j = 0; j < seqLen; j++) {
          const p = scores[j]! / denom;
          const vOff = (b * seqLen + j) * hidden + featOff;
          for (let d = 0; d < headDim; d++) context[cOff + d] += p * v[vOff + d]!;
        }
      }
    }
  }
  return context;
}

/**
 * Runs BERT on `batch` and returns the output of every encoder layer, each [rows * seqLen * hidden]
 * (float32, row-major [rows, seqLen, hidden]). Only the first `numLayers` layers are computed
 * (default: all), so the result has `numLayers` entries.
 */
export function referenceForward(weights: BertWeights, batch: ReferenceBatch, numLayers?: number): Float32Array[] {
  const { config } = weights;
  const depth = numLayers ?? config.numHiddenLayers;
  if (!Number.isInteger(depth) || depth < 0 || depth > config.numHiddenLayers || depth > weights.layers.length) {
    throw new BadRequestError(
      `reference forward: numLayers must be an integer in [0, ${Math.min(config.numHiddenLayers, weights.layers.length)}], got ${numLayers}`,
    );
  }
  const hidden = config.hiddenSize;
  const heads = config.numAttentionHeads;
  if (hidden % heads !== 0) {
    throw new ModelError(`reference forward: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
  }
  checkBatch(config, batch);
  const act = activation(config.hiddenAct);
  const { rows, seqLen } = batch;
  const tokens = rows * seqLen;
  const mask = new Float64Array(tokens);
  for (let i = 0; i < tokens; i++) mask[i] = idAt(batch.attentionMask, i);

  let x = embed(weights, batch);
  const outputs: Float32Array[] = [];
  for (let l = 0; l < depth; l++) {
    const layer = weights.layers[l]!;
    const q = linear(x, tokens, layer.query);
    const k = linear(x, tokens, layer.key);
    const v = linear(x, tokens, layer.value);
    const context = attentionContext(q, k, v, mask, rows, seqLen, hidden, heads);
    const attention = linear(context, tokens, layer.attentionOutput);
    addInPlace(attention, x);
    layerNormInPlace(attention, tokens, hidden, layer.attentionLayerNorm, config.layerNormEps);
    const intermediate = linear(attention, tokens, layer.intermediate);
    for (let i = 0; i < intermediate.length; i++) intermediate[i] = act(intermediate[i]!);
    const out = linear(intermediate, tokens, layer.output);
    addInPlace(out, attention);
    layerNormInPlace(out, tokens, hidden, layer.outputLayerNorm, config.layerNormEps);
    outputs.push(Float32Array.from(out));
    x = out;
  }
  return outputs;
}

// ---------------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------------

function normalizeVectorsInPlace(data: Float32Array, width: number): void {
  for (let off = 0; off < data.length; off += width) {
    let sq = 0;
    for (let i = 0; i < width; i++) sq += data[off + i]! * data[off + i]!;
    const norm = Math.max(Math.sqrt(sq), NORMALIZE_MIN_NORM);
    for (let i = 0; i < width; i++) data[off + i] = data[off + i]! / norm;
  }
}

/**
 * Pools encoder-layer outputs exactly as bert-as-service's graph does: pick the layers, concatenate
 * them on the feature axis, then apply the strategy with the attention mask as a float mask.
 * `layersOut` is what `referenceForward` returned (possibly only the first few layers).
 */
export function referencePool(
  weights: PoolingWeights,
  layersOut: readonly Float32Array[],
  batch: Pick<ReferenceBatch, 'rows' | 'seqLen' | 'attentionMask'>,
  opts: ReferencePoolOptions,
): PooledOutput {
  const { config } = weights;
  const hidden = config.hiddenSize;
  const { rows, seqLen } = batch;
  const tokens = rows * seqLen;
  const picked = resolvePoolingLayers(opts.poolingLayer, config.numHiddenLayers).map((l) => {
    const out = layersOut[l];
    if (out === undefined) {
      throw new BadRequestError(
        `pooling layer ${l} was not computed: only ${layersOut.length} layer outputs were given`,
      );
    }
    if (out.length !== tokens * hidden) {
      throw new BadRequestError(
        `layer ${l} output has ${out.length} values, expected rows*seqLen*hidden = ${tokens * hidden}`,
      );
    }
    return out;
  });
  if (batch.attentionMask.length !== tokens) {
    throw new BadRequestError(
      `attentionMask has ${batch.attentionMask.length} entries, expected rows*seqLen = ${tokens}`,
    );
  }
  const mask = new Float64Array(tokens);
  for (let i = 0; i < tokens; i++) mask[i] = idAt(batch.attentionMask, i);

  // tf.concat(all_layers, -1)
  const width = hidden * picked.length;
  const x = new Float64Array(tokens * width);
  for (let t = 0; t < tokens; t++) {
    picked.forEach((layer, li) => {
      for (let i = 0; i < hidden; i++) x[t * width + li * hidden + i] = layer[t * hidden + i]!;
    });
  }

  let result: PooledOutput;
  switch (opts.poolingStrategy) {
    case 'NONE': {
      // mul_mask
      const data = new Float32Array(tokens * width);
      for (let t = 0; t < tokens; t++)
        for (let i = 0; i < width; i++) data[t * width + i] = x[t * width + i]! * mask[t]!;
      result = { data, shape: [rows, seqLen, width] };
      break;
    }
    case 'REDUCE_MEAN':
      result = { data: maskedReduceMean(x, mask, rows, seqLen, width), shape: [rows, width] };
      break;
    case 'REDUCE_MAX':
      result = { data: maskedReduceMax(x, mask, rows, seqLen, width), shape: [rows, width] };
      break;
    case 'REDUCE_MEAN_MAX': {
      const mean = maskedReduceMean(x, mask, rows, seqLen, width);
      const max = maskedReduceMax(x, mask, rows, seqLen, width);
      const data = new Float32Array(rows * 2 * width);
      for (let b = 0; b < rows; b++) {
        data.set(mean.subarray(b * width, (b + 1) * width), b * 2 * width);
        data.set(max.subarray(b * width, (b + 1) * width), b * 2 * width + width);
      }
      result = { data, shape: [rows, 2 * width] };
      break;
    }
    case 'CLS_TOKEN':
    case 'FIRST_TOKEN': {
      const data = new Float32Array(rows * width);
      for (let b = 0; b < rows; b++) for (let i = 0; i < width; i++) data[b * width + i] = x[b * seqLen * width + i]!;
      result = { data, shape: [rows, width] };
      break;
    }
    case 'SEP_TOKEN':
    case 'LAST_TOKEN': {
      // seq_len = int(Σ mask); gather position seq_len − 1.
      const data = new Float32Array(rows * width);
      for (let b = 0; b < rows; b++) {
        let sum = 0;
        for (let p = 0; p < seqLen; p++) sum += mask[b * seqLen + p]!;
        const last = Math.trunc(sum) - 1;
        if (last < 0 || last >= seqLen) {
          throw new BadRequestError(
            `${opts.poolingStrategy}: row ${b} has ${sum} unmasked tokens, so there is no last token to take`,
          );
        }
        const off = (b * seqLen + last) * width;
        for (let i = 0; i < width; i++) data[b * width + i] = x[off + i]!;
      }
      result = { data, shape: [rows, width] };
      break;
    }
    case 'CLS_POOLED': {
      const pooler = weights.pooler;
      if (pooler === undefined) {
        throw new ModelError(
          'CLS_POOLED needs the pooler weights (bert/pooler/dense), but this model has none; choose another pooling_strategy',
        );
      }
      // tanh(x[:, 0] · W + b) for each selected layer, concatenated in the given order.
      const data = new Float32Array(rows * width);
      const first = new Float64Array(rows * hidden);
      picked.forEach((_, li) => {
        for (let b = 0; b < rows; b++) {
          for (let i = 0; i < hidden; i++) first[b * hidden + i] = x[b * seqLen * width + li * hidden + i]!;
        }
        const dense = linear(first, rows, pooler);
        for (let b = 0; b < rows; b++) {
          for (let i = 0; i < hidden; i++) data[b * width + li * hidden + i] = Math.tanh(dense[b * hidden + i]!);
        }
      });
      result = { data, shape: [rows, width] };
      break;
    }
    default:
      throw new BadRequestError(`unknown pooling strategy '${String(opts.poolingStrategy)}'`);
  }

  if (opts.normalize === true) normalizeVectorsInPlace(result.data, result.shape[result.shape.length - 1]!);
  return result;
}

/** Σ(x·mask) / (Σmask + 1e-10) over positions. */
function maskedReduceMean(
  x: Float64Array,
  mask: Float64Array,
  rows: number,
  seqLen: number,
  width: number,
): Float32Array {
  const out = new Float32Array(rows * width);
  const acc = new Float64Array(width);
  for (let b = 0; b < rows; b++) {
    acc.fill(0);
    let count = 0;
    for (let p = 0; p < seqLen; p++) {
      const m = mask[b * seqLen + p]!;
      count += m;
      const off = (b * seqLen + p) * width;
      for (let i = 0; i < width; i++) acc[i] += x[off + i]! * m;
    }
    for (let i = 0; i < width; i++) out[b * width + i] = acc[i]! / (count + MEAN_POOL_JITTER);
  }
  return out;
}

/** max over positions of x − (1 − mask)·1e30. */
function maskedReduceMax(
  x: Float64Array,
  mask: Float64Array,
  rows: number,
  seqLen: number,
  width: number,
): Float32Array {
  const out = new Float32Array(rows * width);
  for (let b = 0; b < rows; b++) {
    for (let i = 0; i < width; i++) {
      let max = -Infinity;
      for (let p = 0; p < seqLen; p++) {
        const v = x[(b * seqLen + p) * width + i]! - (1 - mask[b * seqLen + p]!) * MAX_POOL_OFFSET;
        if (v > max) max = v;
      }
      out[b * width + i] = max;
    }
  }
  return out;
}

/**
 * Forward pass up to the deepest layer the pooling needs, then pooling: what bertq's pruned ONNX
 * graph computes, end to end.
 */
export function referenceEncode(weights: BertWeights, batch: ReferenceBatch, opts: ReferencePoolOptions): PooledOutput {
  const layers = resolvePoolingLayers(opts.poolingLayer, weights.config.numHiddenLayers);
  const deepest = Math.max(...layers);
  return referencePool(weights, referenceForward(weights, batch, deepest + 1), batch, opts);
}
