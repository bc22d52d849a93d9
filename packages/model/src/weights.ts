/**
 * Maps the variables of a Google BERT checkpoint or a Hugging Face safetensors model onto
 * BertWeights, and back (for writers). One table of slots drives both directions and both formats:
 * each slot pairs a checkpoint name (`bert/encoder/layer_3/attention/self/query/kernel`) with its
 * Hugging Face names (`encoder.layer.3.attention.self.query.weight`) and the expected shape.
 *
 * Only what a graph needs is read: layers beyond `numLayers`, optimizer slots (adam_m/adam_v),
 * the MLM/NSP heads and global_step are never touched.
 */
import { ModelError } from '@bertq/protocol';
import type { BertConfig, BertWeights, EncoderLayerWeights, LayerNormWeights, LinearWeights, Tensor } from './types.js';
import { openCheckpoint } from './tensorbundle/reader.js';
import type { Checkpoint } from './tensorbundle/reader.js';
import { openSafetensorsIndex, openSafetensorsSet } from './safetensors.js';
import type { SafetensorsSet } from './safetensors.js';
import { readBertConfig } from './config.js';
import type { CheckpointModelSource, HuggingFaceModelSource } from './folder.js';

/** What the weight loader reads from: a checkpoint or a set of safetensors files, seen alike. */
export interface TensorSource {
  readonly format: 'checkpoint' | 'safetensors';
  /** Names the source in errors: the checkpoint index, or the safetensors files. */
  readonly description: string;
  has(name: string): boolean;
  shapeOf(name: string): number[] | undefined;
  /** The file a tensor lives in (named in errors). */
  fileOf(name: string): string;
  read(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

export function checkpointTensorSource(ckpt: Checkpoint): TensorSource {
  return {
    format: 'checkpoint',
    description: `checkpoint ${ckpt.indexPath}`,
    has: (name) => ckpt.entries.has(name),
    shapeOf: (name) => ckpt.entries.get(name)?.shape,
    fileOf: (name) => {
      const e = ckpt.entries.get(name);
      return e ? ckpt.dataFiles[e.shardId]! : ckpt.indexPath;
    },
    read: (name) => ckpt.readTensor(name),
    close: () => ckpt.close(),
  };
}

export function safetensorsTensorSource(set: SafetensorsSet): TensorSource {
  return {
    format: 'safetensors',
    description: set.files.map((f) => f.path).join(', '),
    has: (name) => set.tensors.has(name),
    shapeOf: (name) => set.tensors.get(name)?.shape,
    fileOf: (name) => set.tensors.get(name)?.file ?? set.files.map((f) => f.path).join(', '),
    read: (name) => set.readTensor(name),
    close: () => set.close(),
  };
}

interface Slot {
  /** The checkpoint variable name; also the key of the intermediate map both directions use. */
  ckpt: string;
  /** Hugging Face names without prefix, preferred first (the first is what the writer emits). */
  hf: string[];
  /** Shape in BertWeights' layout ([in, out] for kernels). */
  shape: number[];
  /** Stored [out, in] by Hugging Face (nn.Linear.weight): transposed on load and on write. */
  hfTransposed: boolean;
  pooler: boolean;
}

function linearSlots(ckpt: string, hf: string, inDim: number, outDim: number, pooler = false): Slot[] {
  return [
    { ckpt: `${ckpt}/kernel`, hf: [`${hf}.weight`], shape: [inDim, outDim], hfTransposed: true, pooler },
    { ckpt: `${ckpt}/bias`, hf: [`${hf}.bias`], shape: [outDim], hfTransposed: false, pooler },
  ];
}

function layerNormSlots(ckpt: string, hf: string, dim: number): Slot[] {
  // Old Hugging Face (pytorch-pretrained-bert) checkpoints name LayerNorm parameters gamma/beta.
  return [
    { ckpt: `${ckpt}/gamma`, hf: [`${hf}.weight`, `${hf}.gamma`], shape: [dim], hfTransposed: false, pooler: false },
    { ckpt: `${ckpt}/beta`, hf: [`${hf}.bias`, `${hf}.beta`], shape: [dim], hfTransposed: false, pooler: false },
  ];
}

function embeddingSlot(ckptName: string, hfName: string, shape: number[]): Slot {
  return {
    ckpt: `bert/embeddings/${ckptName}`,
    hf: [`embeddings.${hfName}.weight`],
    shape,
    hfTransposed: false,
    pooler: false,
  };
}

function layerSlots(c: BertConfig, i: number): Slot[] {
  const h = c.hiddenSize;
  const ck = `bert/encoder/layer_${i}`;
  const hf = `encoder.layer.${i}`;
  return [
    ...linearSlots(`${ck}/attention/self/query`, `${hf}.attention.self.query`, h, h),
    ...linearSlots(`${ck}/attention/self/key`, `${hf}.attention.self.key`, h, h),
    ...linearSlots(`${ck}/attention/self/value`, `${hf}.attention.self.value`, h, h),
    ...linearSlots(`${ck}/attention/output/dense`, `${hf}.attention.output.dense`, h, h),
    ...layerNormSlots(`${ck}/attention/output/LayerNorm`, `${hf}.attention.output.LayerNorm`, h),
    ...linearSlots(`${ck}/intermediate/dense`, `${hf}.intermediate.dense`, h, c.intermediateSize),
    ...linearSlots(`${ck}/output/dense`, `${hf}.output.dense`, c.intermediateSize, h),
    ...layerNormSlots(`${ck}/output/LayerNorm`, `${hf}.output.LayerNorm`, h),
  ];
}

/** Every weight slot of a BERT with `numLayers` encoder layers (pooler slots flagged). */
function weightSlots(c: BertConfig, numLayers: number): Slot[] {
  const h = c.hiddenSize;
  const slots: Slot[] = [
    embeddingSlot('word_embeddings', 'word_embeddings', [c.vocabSize, h]),
    embeddingSlot('position_embeddings', 'position_embeddings', [c.maxPositionEmbeddings, h]),
    embeddingSlot('token_type_embeddings', 'token_type_embeddings', [c.typeVocabSize, h]),
    ...layerNormSlots('bert/embeddings/LayerNorm', 'embeddings.LayerNorm', h),
  ];
  for (let i = 0; i < numLayers; i++) slots.push(...layerSlots(c, i));
  slots.push(...linearSlots('bert/pooler/dense', 'pooler.dense', h, h, true));
  return slots;
}

/** Row-major [rows, cols] → [cols, rows], in cache-sized tiles (weights are up to 30522 × 1024). */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const TILE = 32;
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(r0 + TILE, rows);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(c0 + TILE, cols);
      for (let r = r0; r < r1; r++) {
        const rowBase = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = data[rowBase + c]!;
      }
    }
  }
  return out;
}

export interface LoadWeightsOptions {
  /**
   * Encoder layers to load, from the bottom (default: all of them). A graph that pools layer -2 of
   * a 12-layer model needs 11; the rest is never read. `config` in the result keeps the model's
   * full numHiddenLayers, so negative layer indices still resolve against the real depth.
   */
  numLayers?: number;
  /** Load the [CLS] pooler when the weights have one (default true; needed for CLS_POOLED only). */
  includePooler?: boolean;
  /**
   * Tensors read concurrently (default 4), so disk reads (libuv's thread pool) overlap the main
   * thread's checksumming and transposing. From a warm page cache the gain is small; it matters when
   * the weights come off disk. More holds more memory for little.
   */
  readAhead?: number;
}

const DEFAULT_READ_AHEAD = 4;

/** Hugging Face prefixes seen on BERT weights: bare (BertModel, sentence-transformers) and `bert.` (task heads). */
const HF_PREFIXES = ['', 'bert.'] as const;

/** Finds the name each slot has in `source`, or undefined when absent. */
function nameResolver(source: TensorSource): (slot: Slot) => { name: string | undefined; expected: string } {
  if (source.format === 'checkpoint') {
    if (!source.has('bert/embeddings/word_embeddings')) {
      throw new ModelError(
        `${source.description} has no variable bert/embeddings/word_embeddings: not a Google BERT checkpoint (variables under bert/...)`,
        { details: { file: source.description, variable: 'bert/embeddings/word_embeddings' } },
      );
    }
    return (slot) => ({ name: source.has(slot.ckpt) ? slot.ckpt : undefined, expected: slot.ckpt });
  }
  const prefix = HF_PREFIXES.find((p) => source.has(`${p}embeddings.word_embeddings.weight`));
  if (prefix === undefined) {
    const foreign = ['roberta.', 'distilbert.', 'electra.', 'model.'].find((p) =>
      source.has(`${p}embeddings.word_embeddings.weight`),
    );
    throw new ModelError(
      `${source.description} has no tensor embeddings.word_embeddings.weight or bert.embeddings.word_embeddings.weight` +
        (foreign
          ? ` (it holds ${foreign}* weights, which are not a BERT model)`
          : ': not a BERT model in Hugging Face layout'),
      { details: { file: source.description, tensor: 'embeddings.word_embeddings.weight' } },
    );
  }
  return (slot) => ({
    name: slot.hf.map((n) => prefix + n).find((n) => source.has(n)),
    expected: prefix + slot.hf[0]!,
  });
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Reads BertWeights from a tensor source. Every missing or mis-shaped variable is a ModelError that
 * names the variable, the file and the expected shape (from `config`).
 */
export async function loadBertWeights(
  source: TensorSource,
  config: BertConfig,
  options: LoadWeightsOptions = {},
): Promise<BertWeights> {
  const numLayers = options.numLayers ?? config.numHiddenLayers;
  if (!Number.isInteger(numLayers) || numLayers < 0 || numLayers > config.numHiddenLayers) {
    throw new ModelError(`cannot load ${numLayers} encoder layers: the model has ${config.numHiddenLayers}`, {
      details: { numLayers, numHiddenLayers: config.numHiddenLayers },
    });
  }
  const resolveName = nameResolver(source);
  const slots = weightSlots(config, numLayers);
  const poolerNames = slots.filter((s) => s.pooler).map((s) => resolveName(s));
  // sentence-transformers exports often drop the pooler; half a pooler is a broken file.
  const poolerPresent = poolerNames.some((p) => p.name !== undefined);
  const loadPooler = (options.includePooler ?? true) && poolerPresent;

  const tensors = new Map<string, Tensor>();
  const readAhead = options.readAhead ?? DEFAULT_READ_AHEAD;
  const inFlight: Array<Promise<void>> = [];
  try {
    for (const slot of slots) {
      if (slot.pooler && !loadPooler) continue;
      const { name, expected } = resolveName(slot);
      const kind = source.format === 'checkpoint' ? 'variable' : 'tensor';
      if (name === undefined) {
        throw new ModelError(
          `${source.description} has no ${kind} ${expected}, which a BERT model with this config needs`,
          {
            details: { file: source.description, variable: expected },
          },
        );
      }
      const transposed = source.format === 'safetensors' && slot.hfTransposed;
      const storedShape = transposed ? [...slot.shape].reverse() : slot.shape;
      const actualShape = source.shapeOf(name) ?? [];
      if (!sameShape(actualShape, storedShape)) {
        throw new ModelError(
          `${kind} ${name} in ${source.fileOf(name)} has shape [${actualShape.join(', ')}], but the config implies [${storedShape.join(', ')}]`,
          { details: { file: source.fileOf(name), variable: name, shape: actualShape, expected: storedShape } },
        );
      }
      inFlight.push(
        source.read(name).then((raw) => {
          const data = transposed ? transpose2d(raw, storedShape[0]!, storedShape[1]!) : raw;
          tensors.set(slot.ckpt, { shape: slot.shape, data });
        }),
      );
      if (inFlight.length >= readAhead) await inFlight.shift();
    }
    await Promise.all(inFlight);
  } catch (err) {
    // Let every read settle before the caller closes the files, and leave no rejection unobserved.
    await Promise.allSettled(inFlight);
    throw err;
  }
  return assembleWeights(config, tensors, numLayers, loadPooler);
}

function assembleWeights(
  config: BertConfig,
  t: ReadonlyMap<string, Tensor>,
  numLayers: number,
  withPooler: boolean,
): BertWeights {
  const get = (name: string): Tensor => t.get(name)!;
  const linear = (base: string): LinearWeights => ({ kernel: get(`${base}/kernel`), bias: get(`${base}/bias`) });
  const layerNorm = (base: string): LayerNormWeights => ({ gamma: get(`${base}/gamma`), beta: get(`${base}/beta`) });
  const layers: EncoderLayerWeights[] = [];
  for (let i = 0; i < numLayers; i++) {
    const b = `bert/encoder/layer_${i}`;
    layers.push({
      query: linear(`${b}/attention/self/query`),
      key: linear(`${b}/attention/self/key`),
      value: linear(`${b}/attention/self/value`),
      attentionOutput: linear(`${b}/attention/output/dense`),
      attentionLayerNorm: layerNorm(`${b}/attention/output/LayerNorm`),
      intermediate: linear(`${b}/intermediate/dense`),
      output: linear(`${b}/output/dense`),
      outputLayerNorm: layerNorm(`${b}/output/LayerNorm`),
    });
  }
  const weights: BertWeights = {
    config,
    embeddings: {
      word: get('bert/embeddings/word_embeddings'),
      position: get('bert/embeddings/position_embeddings'),
      tokenType: get('bert/embeddings/token_type_embeddings'),
      layerNorm: layerNorm('bert/embeddings/LayerNorm'),
    },
    layers,
  };
  if (withPooler) weights.pooler = linear('bert/pooler/dense');
  return weights;
}

/** BertWeights as checkpoint variables (TensorFlow names and layout), for writeCheckpoint. */
export function bertWeightsToCheckpointVariables(w: BertWeights): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const linear = (base: string, l: LinearWeights): void => {
    out.set(`${base}/kernel`, l.kernel);
    out.set(`${base}/bias`, l.bias);
  };
  const layerNorm = (base: string, n: LayerNormWeights): void => {
    out.set(`${base}/gamma`, n.gamma);
    out.set(`${base}/beta`, n.beta);
  };
  out.set('bert/embeddings/word_embeddings', w.embeddings.word);
  out.set('bert/embeddings/position_embeddings', w.embeddings.position);
  out.set('bert/embeddings/token_type_embeddings', w.embeddings.tokenType);
  layerNorm('bert/embeddings/LayerNorm', w.embeddings.layerNorm);
  for (const [i, l] of w.layers.entries()) {
    const b = `bert/encoder/layer_${i}`;
    linear(`${b}/attention/self/query`, l.query);
    linear(`${b}/attention/self/key`, l.key);
    linear(`${b}/attention/self/value`, l.value);
    linear(`${b}/attention/output/dense`, l.attentionOutput);
    layerNorm(`${b}/attention/output/LayerNorm`, l.attentionLayerNorm);
    linear(`${b}/intermediate/dense`, l.intermediate);
    linear(`${b}/output/dense`, l.output);
    layerNorm(`${b}/output/LayerNorm`, l.outputLayerNorm);
  }
  if (w.pooler) linear('bert/pooler/dense', w.pooler);
  return out;
}

/**
 * BertWeights as Hugging Face tensors, the way sentence-transformers saves a BertModel: no `bert.`
 * prefix, `LayerNorm.weight/bias`, Linear weights transposed back to [out, in].
 */
export function bertWeightsToHfTensors(w: BertWeights): Map<string, Tensor> {
  const byCkpt = bertWeightsToCheckpointVariables(w);
  const out = new Map<string, Tensor>();
  for (const slot of weightSlots(w.config, w.layers.length)) {
    const t = byCkpt.get(slot.ckpt);
    if (!t) continue; // an absent pooler
    if (slot.hfTransposed) {
      const [rows, cols] = t.shape as [number, number];
      out.set(slot.hf[0]!, { shape: [cols, rows], data: transpose2d(t.data, rows, cols) });
    } else {
      out.set(slot.hf[0]!, t);
    }
  }
  return out;
}

/** Loads BertWeights from a checkpoint prefix (checks the data shards first, so a missing one is named up front). */
export async function loadCheckpointWeights(
  prefix: string,
  config: BertConfig,
  options: LoadWeightsOptions = {},
): Promise<BertWeights> {
  const ckpt = await openCheckpoint(prefix);
  try {
    await ckpt.verifyDataFiles();
    return await loadBertWeights(checkpointTensorSource(ckpt), config, options);
  } finally {
    await ckpt.close();
  }
}

/**
 * Loads BertWeights from safetensors: one or more `.safetensors` files, or a
 * `model.safetensors.index.json` (every shard it names is opened).
 */
export async function loadSafetensorsWeights(
  paths: string | readonly string[],
  config: BertConfig,
  options: LoadWeightsOptions = {},
): Promise<BertWeights> {
  const list = typeof paths === 'string' ? [paths] : paths;
  const set =
    list.length === 1 && list[0]!.endsWith('.index.json')
      ? await openSafetensorsIndex(list[0]!)
      : await openSafetensorsSet(list);
  try {
    return await loadBertWeights(safetensorsTensorSource(set), config, options);
  } finally {
    await set.close();
  }
}

/**
 * Loads config and weights of a resolved checkpoint or Hugging Face source (see resolveModelSource).
 * An ONNX source has no weights to read; its graph is used as is.
 */
export async function loadModelWeights(
  source: CheckpointModelSource | HuggingFaceModelSource,
  options: LoadWeightsOptions = {},
): Promise<BertWeights> {
  const config = await readBertConfig(source.configPath);
  return source.kind === 'checkpoint'
    ? loadCheckpointWeights(source.checkpointPrefix, config, options)
    : loadSafetensorsWeights(source.weightsIndexPath ?? source.weightsPaths, config, options);
}
