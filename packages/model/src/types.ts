/**
 * The shared vocabulary of the model path. Readers produce `BertWeights`; the graph builder and the
 * reference forward pass consume them; the Encoder ties them to a tokenizer.
 */
import type { Precision } from './devices.js';
import type { Int8WeightBits } from './onnx/quantize.js';

/** BERT hyper-parameters, normalised from Google's bert_config.json or Hugging Face's config.json. */
export interface BertConfig {
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  /** 'gelu' (erf form, as Google BERT and HF 'gelu') or 'gelu_new'/'gelu_pytorch_tanh' (tanh form), or 'relu'. */
  hiddenAct: 'gelu' | 'gelu_new' | 'relu';
  maxPositionEmbeddings: number;
  typeVocabSize: number;
  layerNormEps: number;
  /** Model family as declared ('bert' for everything bertq serves today). */
  modelType: string;
}

/** A dense float32 tensor in row-major order. */
export interface Tensor {
  shape: number[];
  data: Float32Array;
}

export interface LinearWeights {
  /** Shape [in, out]: y = x · kernel + bias (TensorFlow's layout; Hugging Face's [out, in] is transposed on load). */
  kernel: Tensor;
  /** Shape [out]. */
  bias: Tensor;
}

export interface LayerNormWeights {
  /** Shape [hidden]. */
  gamma: Tensor;
  /** Shape [hidden]. */
  beta: Tensor;
}

export interface EncoderLayerWeights {
  query: LinearWeights;
  key: LinearWeights;
  value: LinearWeights;
  attentionOutput: LinearWeights;
  attentionLayerNorm: LayerNormWeights;
  intermediate: LinearWeights;
  output: LinearWeights;
  outputLayerNorm: LayerNormWeights;
}

/** Every weight of a BERT encoder, in one format-independent shape. */
export interface BertWeights {
  config: BertConfig;
  embeddings: {
    /** [vocab, hidden] */
    word: Tensor;
    /** [maxPosition, hidden] */
    position: Tensor;
    /** [typeVocab, hidden] */
    tokenType: Tensor;
    layerNorm: LayerNormWeights;
  };
  layers: EncoderLayerWeights[];
  /** The [CLS] pooler (dense + tanh); absent in some sentence-transformers exports. */
  pooler?: LinearWeights;
}

export const POOLING_STRATEGIES = [
  'NONE',
  'REDUCE_MEAN',
  'REDUCE_MAX',
  'REDUCE_MEAN_MAX',
  'CLS_TOKEN',
  'FIRST_TOKEN',
  'SEP_TOKEN',
  'LAST_TOKEN',
  'CLS_POOLED',
] as const;
export type PoolingStrategy = (typeof POOLING_STRATEGIES)[number];

/** Options that shape the ONNX graph; part of the graph cache key. */
export interface GraphOptions {
  poolingStrategy: PoolingStrategy;
  /** Layer indices as bert-as-service takes them: -1 is the last layer, 0 the first encoder layer's output... see graph.ts. */
  poolingLayer: number[];
  /** float16: weights and activations in half precision; inputs and outputs stay float32. */
  precision: Precision;
  /** L2-normalise each output vector. */
  normalize: boolean;
  /** Use ONNX Runtime's fused transformer operators (com.microsoft domain). */
  fused: boolean;
  /**
   * int8 only: 8-bit weights where the CPU's int8 kernel sums exactly (VNNI, ARM), 7-bit where it
   * saturates (AVX2, AVX-512BW without VNNI): see int8-kernel.ts. Absent for float graphs, and in
   * int8 graphs built before it existed (8-bit).
   */
  int8WeightBits?: Int8WeightBits;
}

/** One tokenized batch, padded to a common length. Row-major [rows, seqLen]. */
export interface TokenizedBatch {
  rows: number;
  seqLen: number;
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  tokenTypeIds: BigInt64Array;
  /** Per row, the tokens as strings (only when asked for). */
  tokens?: string[][];
  /** Per row, the number of real (unpadded) tokens. */
  lengths: number[];
}
