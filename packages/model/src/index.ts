export { Encoder, defaultMaxBatchTokens } from './encoder.js';
export { prepareModel, resolvePrecision } from './prepare.js';
export { DEVICES, DEVICE_PROFILES, PRECISIONS } from './devices.js';
export { describeInt8Kernel, detectInt8Kernel, int8Isa, int8SumsExact } from './int8-kernel.js';
export { INT8_WEIGHT_BITS } from './onnx/quantize.js';
export { POOLING_STRATEGIES } from './types.js';
export { BertTokenizer, DEFAULT_MAX_SEQ_LEN, MIN_MAX_SEQ_LEN } from './tokenizer.js';
export { syntheticBertWeights, syntheticVocab, tinyBertConfig, bertBaseConfig } from './synthetic.js';
export { referenceForward, referencePool, referenceEncode, erf } from './reference.js';
export { resolvePoolingLayers } from './pooling-layers.js';
export {
  buildBertGraph,
  layersNeeded,
  outputDim,
  isTokenLevel,
  GRAPH_VERSION,
  GRAPH_INPUTS,
  GRAPH_OUTPUT,
} from './graph.js';
export { createRuntime, runtimeVersions } from './runtime.js';
export { GraphCache, graphCacheKey, canonicalHash } from './graph-cache.js';
export { readOnnxMetadata } from './onnx/metadata.js';
export { GraphBuilder } from './onnx/builder.js';
export { writeCheckpointFolder, writeHuggingFaceFolder, writeOnnxFolder } from './export.js';
export { bertConfigJson } from './config-json.js';
export { parseBertConfig, readBertConfig } from './config.js';
export {
  SafetensorsFile,
  SafetensorsSet,
  SAFETENSORS_FLOAT_DTYPES,
  openSafetensors,
  openSafetensorsIndex,
  openSafetensorsSet,
  readSafetensorsIndex,
  writeSafetensors,
  writeShardedSafetensors,
} from './safetensors.js';
export {
  Checkpoint,
  checkpointDataPath,
  listCheckpointVariables,
  normalizeCheckpointPrefix,
  openCheckpoint,
} from './tensorbundle/reader.js';
export { writeCheckpoint } from './tensorbundle/writer.js';
export {
  bertWeightsToCheckpointVariables,
  bertWeightsToHfTensors,
  checkpointTensorSource,
  loadBertWeights,
  loadCheckpointWeights,
  loadModelWeights,
  loadSafetensorsWeights,
  safetensorsTensorSource,
} from './weights.js';
export { readSentenceTransformersHint, resolveModelSource } from './folder.js';
export { downloadModel, isHubModelId, defaultCacheDir } from './hub/index.js';
export type { EncoderOptions, EncodeOptions, EncodeResult, EncoderInfo, OpenOptions } from './encoder.js';
export type { PrepareOptions, PreparedModel, TokenizerSource } from './prepare.js';
export type { DeviceProfile, Precision } from './devices.js';
export type { Int8Isa, Int8Kernel } from './int8-kernel.js';
export type { Int8WeightBits } from './onnx/quantize.js';
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
export type { IdArray, ReferenceBatch, ReferencePoolOptions, PooledOutput, PoolingWeights } from './reference.js';
export type { Runtime, RuntimeFeeds, RuntimeOptions, RuntimeTensor } from './runtime.js';
export type { Device } from './devices.js';
export type { VocabSource } from './export.js';
export type { SafetensorsTensorInfo, RawSafetensor } from './safetensors.js';
export type { CheckpointEntry, CheckpointHeader, CheckpointSummary } from './tensorbundle/reader.js';
export type { CheckpointDtype } from './tensorbundle/bundle-proto.js';
export type { RawCheckpointTensor, WrittenCheckpoint } from './tensorbundle/writer.js';
export type { LoadWeightsOptions, TensorSource } from './weights.js';
export type {
  CheckpointModelSource,
  HuggingFaceModelSource,
  ModelSourceOptions,
  OnnxModelSource,
  ResolvedModelSource,
  SentenceTransformersHint,
} from './folder.js';
export type { DownloadModelOptions, DownloadProgress } from './hub/index.js';
