export { POOLING_STRATEGIES } from './types.js';
export { BertTokenizer, DEFAULT_MAX_SEQ_LEN, MIN_MAX_SEQ_LEN } from './tokenizer.js';
export { syntheticBertWeights, tinyBertConfig, bertBaseConfig } from './synthetic.js';
export { referenceForward, referencePool, referenceEncode, erf } from './reference.js';
export { resolvePoolingLayers } from './pooling-layers.js';
export { float32ToFloat16Bits, float16BitsToFloat32 } from './fp16.js';
export { buildBertGraph, layersNeeded, outputDim, isTokenLevel, GRAPH_VERSION, GRAPH_INPUTS, GRAPH_OUTPUT } from './graph.js';
export { createRuntime, runtimeVersions } from './runtime.js';
export type {
  BertConfig,
  BertWeights,
  EncoderLayerWeights,
  GraphOptions,
  LayerNormWeights,
  LinearWeights,
  PoolingStrategy,
  Tensor,
  TokenizedBatch,
} from './types.js';
export type { BertTokenizerOptions, SpecialTokenIds, TokenizeOptions, TokenizedText } from './tokenizer.js';
export type { SyntheticWeightsOptions } from './synthetic.js';
export type { IdArray, ReferenceBatch, ReferencePoolOptions, PooledOutput } from './reference.js';
export type { Device, Runtime, RuntimeFeeds, RuntimeOptions, RuntimeTensor } from './runtime.js';
