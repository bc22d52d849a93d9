export { POOLING_STRATEGIES } from './types.js';
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
