/**
 * The in-process encoder: a model folder (or `.onnx` file, or hub id) and a list of sentences in,
 * vectors out. The worker runs exactly this; users can too, without NATS.
 *
 *   const enc = await Encoder.load({ model: '/models/uncased_L-12_H-768_A-12' });
 *   const { data, shape } = await enc.encode(['First do it', 'then do it right']);
 *
 * Loading resolves the model's files, builds (or takes from the cache) the ONNX graph with the
 * pooling inside it, opens it in ONNX Runtime and runs one warm-up row. Encoding tokenizes, groups
 * rows of similar length into batches under a token budget, runs them, and puts rows back in order.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BadRequestError, ModelError } from '@bertq/protocol';
import { parseBertConfig, readBertConfig } from './config.js';
import { resolveModelSource } from './folder.js';
import type { ModelSourceOptions, ResolvedModelSource, SentenceTransformersHint } from './folder.js';
import { GRAPH_INPUTS, GRAPH_OUTPUT, buildBertGraph, isTokenLevel, layersNeeded, outputDim } from './graph.js';
import { GraphCache, fileContentHash, graphCacheKey } from './graph-cache.js';
import { defaultCacheDir, downloadModel, isHubModelId } from './hub.js';
import type { DownloadModelOptions } from './hub.js';
import { readOnnxMetadata } from './onnx/metadata.js';
import { referencePool } from './reference.js';
import { createRuntime } from './runtime.js';
import type { Device, Runtime, RuntimeFeeds } from './runtime.js';
import { BertTokenizer, DEFAULT_MAX_SEQ_LEN } from './tokenizer.js';
import type { TokenizedText } from './tokenizer.js';
import { POOLING_STRATEGIES } from './types.js';
import type { BertConfig, GraphOptions, PoolingStrategy, TokenizedBatch } from './types.js';
import { loadModelWeights } from './weights.js';

export interface EncoderOptions extends ModelSourceOptions {
  /** How token vectors become one sentence vector (bert-as-service's pooling_strategy). Default REDUCE_MEAN. */
  poolingStrategy?: PoolingStrategy;
  /**
   * Encoder layer(s) to pool: -1 the last, -2 the second-to-last (default, as bert-as-service), a list
   * concatenates. Only the layers up to the deepest one are computed, so shallower is faster.
   */
  poolingLayer?: number | number[];
  /**
   * Longest sequence in tokens, [CLS]/[SEP] included; longer input is truncated on the right.
   * `null` (bert-as-service's NONE) = the longest in each batch, and a sentence longer than the model
   * allows is a TOO_LONG error. Default 25: cheap and enough for short sentences; raise it for documents.
   */
  maxSeqLen?: number | null;
  /** Keep case and accents (for cased and multilingual-cased models). Default: the tokenizer's own setting. */
  casedTokenization?: boolean;
  /** Exclude [CLS] and [SEP] from attention and pooling (bert-as-service's mask_cls_sep). */
  maskClsSep?: boolean;
  /** Do not add [CLS]/[SEP] to single sentences. */
  noSpecialToken?: boolean;
  /** With NONE pooling and maxSeqLen null, pad token-level output to max_position_embeddings so every result has the same length. */
  fixedEmbedLength?: boolean;
  /** Half-precision weights and compute: half the memory, faster on GPUs, ~1e-3 relative error. */
  fp16?: boolean;
  /** L2-normalise each vector (what sentence-transformers models with a Normalize module expect). */
  normalize?: boolean;
  /**
   * Use ONNX Runtime's fused transformer kernels (com.microsoft Attention, SkipLayerNormalization,
   * BiasGelu). Default: on CUDA, where they are the fast path; off on CPU, where bench/model.bench.ts
   * measures them no faster than the plain graph (ONNX Runtime fuses that itself), which also runs
   * on any ONNX runtime.
   */
  fused?: boolean;
  device?: Device;
  deviceId?: number;
  /** Inference threads; default all cores. A fleet of N CPU workers gives each cores/N. */
  threads?: number;
  /** Where built graphs are cached (bert-as-service's graph_tmp_dir). Default `<cache>/graphs`. */
  graphTmpDir?: string;
  /** Options for hub downloads when `model` is a Hugging Face id. */
  hub?: Omit<DownloadModelOptions, 'signal'>;
  /** Rows per inference batch inside encode(). Default 256 (bert-as-service's max_batch_size). */
  maxBatchSize?: number;
  /** Padded tokens (rows × longest) per inference batch inside encode(). Default 2048 on CPU, 16384 on CUDA. */
  maxBatchTokens?: number;
}

export interface EncodeOptions {
  /** Rows are token lists, not strings: no wordpiece split, unknown tokens become [UNK]. */
  isTokenized?: boolean;
  /** Return the tokens each row was encoded as. */
  showTokens?: boolean;
}

export interface EncodeResult {
  /** Row-major vectors of `shape`. */
  data: Float32Array;
  /** [rows, dims], or [rows, seqLen, dims] for NONE pooling. */
  shape: number[];
  tokens?: string[][];
}

/** What the encoder is: shown by `bertq status`, returned by the worker's `config` endpoint. */
export interface EncoderInfo {
  model: string;
  source: ResolvedModelSource['kind'];
  /** Length of one output vector (per token for NONE). */
  dims: number;
  tokenLevel: boolean;
  hiddenSize: number;
  numHiddenLayers: number;
  /** Encoder layers the graph computes (deepest pooling layer + 1). */
  layersComputed: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  maxSeqLen: number | null;
  poolingStrategy: PoolingStrategy;
  poolingLayer: number[];
  casedTokenization: boolean | undefined;
  maskClsSep: boolean;
  noSpecialToken: boolean;
  fixedEmbedLength: boolean;
  fp16: boolean;
  normalize: boolean;
  fused: boolean;
  device: Device;
  /** The ONNX file in use (a cached build, or the given `.onnx`). */
  graphPath: string;
  graphCacheHit: boolean;
  sentenceTransformers?: SentenceTransformersHint;
}

const DEFAULT_POOLING: PoolingStrategy = 'REDUCE_MEAN';
const DEFAULT_POOLING_LAYER = [-2];
const DEFAULT_MAX_BATCH_SIZE = 256;
/**
 * Default padded-token budget of one inference batch. On a CPU, batches of ~2k tokens already keep
 * every core busy (measured: 32-64 short rows run as fast per row as 256), and smaller batches cut
 * from a length-sorted window pad less. A GPU needs larger batches to fill it.
 */
export function defaultMaxBatchTokens(device: Device): number {
  return device === 'cuda' ? 16384 : 2048;
}
const HIDDEN_STATE_OUTPUTS = ['last_hidden_state', 'hidden_states', 'output_0'];

/** How the graph's output relates to what encode() returns. */
type GraphKind =
  | { kind: 'pooled' }
  /** A foreign ONNX export that returns [B, S, H] hidden states: bertq pools them in TypeScript. */
  | { kind: 'hidden'; output: string };

function normalizeLayers(layer: number | number[] | undefined): number[] {
  const list = layer === undefined ? DEFAULT_POOLING_LAYER : Array.isArray(layer) ? layer : [layer];
  for (const l of list) {
    if (!Number.isInteger(l)) throw new BadRequestError(`pooling_layer must be integers, got ${JSON.stringify(layer)}`);
  }
  return [...list];
}

function checkStrategy(s: string): PoolingStrategy {
  if (!(POOLING_STRATEGIES as readonly string[]).includes(s)) {
    throw new BadRequestError(`unknown pooling_strategy ${s}: use one of ${POOLING_STRATEGIES.join(', ')}`);
  }
  return s as PoolingStrategy;
}

async function sourceWeightsHash(source: ResolvedModelSource, cacheRoot: string): Promise<string> {
  const files =
    source.kind === 'checkpoint'
      ? [source.configPath, `${source.checkpointPrefix}.index`, ...source.dataFiles]
      : source.kind === 'huggingface'
        ? [source.configPath, ...source.weightsPaths]
        : [source.onnxPath];
  const hashes = await Promise.all(files.map((f) => fileContentHash(f, cacheRoot)));
  return hashes.join(':');
}

export class Encoder {
  private constructor(
    readonly info: EncoderInfo,
    readonly tokenizer: BertTokenizer,
    private readonly runtime: Runtime,
    private readonly graph: GraphKind,
    private readonly modelConfig: BertConfig,
    private readonly batchLimits: { rows: number; tokens: number },
  ) {}

  /** The encoder's configuration (dims, layers, vocab size, options). */
  get config(): EncoderInfo {
    return this.info;
  }

  static async load(options: EncoderOptions): Promise<Encoder> {
    const poolingStrategy = checkStrategy(options.poolingStrategy ?? DEFAULT_POOLING);
    const poolingLayer = normalizeLayers(options.poolingLayer);
    const maxSeqLen = options.maxSeqLen === undefined ? DEFAULT_MAX_SEQ_LEN : options.maxSeqLen;
    const fused = options.fused ?? (options.device ?? 'cpu') === 'cuda';
    const fp16 = options.fp16 ?? false;
    const normalize = options.normalize ?? false;
    const device = options.device ?? 'cpu';
    const cacheRoot = options.hub?.cacheDir ?? defaultCacheDir();
    const graphDir = options.graphTmpDir ?? join(cacheRoot, 'graphs');

    let sourceOptions: ModelSourceOptions = options;
    const where = options.model ?? options.modelDir;
    if (where === undefined) throw new BadRequestError('no model given: set `model` (a folder, an .onnx file or a hub id) or `modelDir`');
    if (options.model !== undefined && isHubModelId(options.model)) {
      const folder = await downloadModel(options.model, { progress: process.stderr.isTTY, ...options.hub });
      sourceOptions = { ...options, model: folder };
    }
    const source = await resolveModelSource(sourceOptions);

    // Config: from the folder, or for an ONNX file from bertq's metadata or a config.json beside it.
    let config: BertConfig;
    let onnxBytes: Uint8Array | undefined;
    let builtOptions: Partial<GraphOptions> | undefined;
    if (source.kind === 'onnx') {
      onnxBytes = await readFile(source.onnxPath);
      const meta = readOnnxMetadata(onnxBytes);
      if (meta['bertq.config']) {
        config = parseBertConfig(JSON.parse(meta['bertq.config']), `${source.onnxPath} (bertq metadata)`);
        builtOptions = JSON.parse(meta['bertq.options'] ?? '{}') as Partial<GraphOptions>;
      } else if (source.configPath) {
        config = await readBertConfig(source.configPath);
      } else {
        throw new ModelError(`${source.onnxPath} was not built by bertq and has no config.json beside it: cannot tell its max_position_embeddings`, {
          details: { file: join(source.onnxPath, '..', 'config.json') },
        });
      }
    } else {
      config = await readBertConfig(source.configPath);
    }

    const tokenizerOpts = {
      maxPositionEmbeddings: config.maxPositionEmbeddings,
      maxSeqLen,
      ...(options.casedTokenization === undefined ? {} : { cased: options.casedTokenization }),
    };
    const vocabPath = 'vocabPath' in source ? source.vocabPath : undefined;
    const tokenizerJsonPath = 'tokenizerJsonPath' in source ? source.tokenizerJsonPath : undefined;
    // A Hugging Face tokenizer.json carries the model's own normaliser (cased or not): prefer it there.
    const tokenizer =
      source.kind !== 'checkpoint' && tokenizerJsonPath
        ? await BertTokenizer.fromTokenizerJson(tokenizerJsonPath, tokenizerOpts)
        : vocabPath
          ? await BertTokenizer.fromVocabFile(vocabPath, tokenizerOpts)
          : tokenizerJsonPath
            ? await BertTokenizer.fromTokenizerJson(tokenizerJsonPath, tokenizerOpts)
            : (() => {
                throw new ModelError(`no vocab.txt or tokenizer.json beside ${where}`, { details: { file: join(where, 'vocab.txt') } });
              })();

    const graphOptions: GraphOptions = { poolingStrategy, poolingLayer, fp16, normalize, fused };
    const layersComputed = layersNeeded(graphOptions, config.numHiddenLayers);
    let graphPath: string;
    let graphCacheHit = false;
    let graph: GraphKind = { kind: 'pooled' };

    if (source.kind === 'onnx') {
      graphPath = source.onnxPath;
      if (builtOptions) {
        for (const key of ['poolingStrategy', 'poolingLayer', 'fp16', 'normalize'] as const) {
          const want = JSON.stringify(graphOptions[key]);
          const have = JSON.stringify(builtOptions[key]);
          if (options[key] !== undefined && want !== have) {
            throw new BadRequestError(
              `${source.onnxPath} was built with ${key} ${have}, but ${want} was asked for: rebuild it from the weights, or drop the option`,
            );
          }
          (graphOptions as unknown as Record<string, unknown>)[key] = builtOptions[key];
        }
      }
    } else {
      const key = graphCacheKey(await sourceWeightsHash(source, cacheRoot), graphOptions, layersComputed);
      const cache = new GraphCache(graphDir);
      const hit = await cache.get(key);
      if (hit) {
        graphPath = hit;
        graphCacheHit = true;
      } else {
        const weights = await loadModelWeights(source, {
          numLayers: layersComputed,
          includePooler: poolingStrategy === 'CLS_POOLED',
        });
        graphPath = await cache.put(key, buildBertGraph(weights, graphOptions));
      }
    }

    const runtimeOpts = {
      device,
      ...(options.deviceId === undefined ? {} : { deviceId: options.deviceId }),
      ...(options.threads === undefined ? {} : { threads: options.threads }),
    };
    const runtime = await createRuntime(graphPath, runtimeOpts);
    try {
      for (const name of runtime.inputNames) {
        if (!(GRAPH_INPUTS as readonly string[]).includes(name)) {
          throw new ModelError(`${graphPath} has an input ${name}; bertq feeds ${GRAPH_INPUTS.join(', ')}`);
        }
      }
      if (!runtime.outputNames.includes(GRAPH_OUTPUT)) {
        const hidden = HIDDEN_STATE_OUTPUTS.find((o) => runtime.outputNames.includes(o));
        if (!hidden) {
          throw new ModelError(
            `${graphPath} has neither an '${GRAPH_OUTPUT}' output (bertq graph) nor a hidden-state output (${HIDDEN_STATE_OUTPUTS.join(', ')}); it has ${runtime.outputNames.join(', ')}`,
          );
        }
        const deepest = Math.max(...poolingLayer.map((l) => (l < 0 ? config.numHiddenLayers + l : l)));
        if (poolingLayer.length !== 1 || deepest !== config.numHiddenLayers - 1) {
          throw new BadRequestError(`${graphPath} only returns the last layer's hidden states: pooling_layer must be -1, got ${poolingLayer}`);
        }
        if (poolingStrategy === 'CLS_POOLED') {
          throw new BadRequestError(`${graphPath} has no pooler output: CLS_POOLED needs a model folder with weights`);
        }
        graph = { kind: 'hidden', output: hidden };
      }
    } catch (err) {
      await runtime.close();
      throw err;
    }

    const info: EncoderInfo = {
      model: where,
      source: source.kind,
      dims: outputDim(config, graphOptions),
      tokenLevel: isTokenLevel(graphOptions.poolingStrategy),
      hiddenSize: config.hiddenSize,
      numHiddenLayers: config.numHiddenLayers,
      layersComputed: graph.kind === 'hidden' ? config.numHiddenLayers : layersNeeded(graphOptions, config.numHiddenLayers),
      vocabSize: tokenizer.vocabSize,
      maxPositionEmbeddings: config.maxPositionEmbeddings,
      maxSeqLen,
      poolingStrategy: graphOptions.poolingStrategy,
      poolingLayer: graphOptions.poolingLayer,
      casedTokenization: options.casedTokenization,
      maskClsSep: options.maskClsSep ?? false,
      noSpecialToken: options.noSpecialToken ?? false,
      fixedEmbedLength: options.fixedEmbedLength ?? false,
      fp16: graphOptions.fp16,
      normalize: graphOptions.normalize,
      fused,
      device: runtime.device,
      graphPath,
      graphCacheHit,
    };
    if ('sentenceTransformers' in source && source.sentenceTransformers) info.sentenceTransformers = source.sentenceTransformers;
    const limits = {
      rows: options.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE,
      tokens: options.maxBatchTokens ?? defaultMaxBatchTokens(device),
    };
    if (!(limits.rows >= 1) || !(limits.tokens >= 1)) throw new BadRequestError('maxBatchSize and maxBatchTokens must be at least 1');
    const encoder = new Encoder(info, tokenizer, runtime, graph, config, limits);
    try {
      await encoder.encode(['warm up']); // fails fast on a broken graph, and takes the first-run cost now
    } catch (err) {
      await encoder.close();
      throw err;
    }
    return encoder;
  }

  /** Tokenizes with the encoder's settings (validates input; TOO_LONG and BAD_REQUEST come from here). */
  tokenize(texts: unknown, options: EncodeOptions = {}): Promise<TokenizedText[]> {
    return this.tokenizer.tokenize(texts, {
      maxSeqLen: this.info.maxSeqLen,
      isTokenized: options.isTokenized ?? false,
      showTokens: options.showTokens ?? false,
      noSpecialToken: this.info.noSpecialToken,
      maskClsSep: this.info.maskClsSep,
    });
  }

  /** The sequence length token-level (NONE) output is padded to, for a batch whose longest row is `longest`. */
  tokenLevelLength(longest: number): number {
    if (this.info.maxSeqLen !== null) return this.info.maxSeqLen;
    return this.info.fixedEmbedLength ? this.info.maxPositionEmbeddings : longest;
  }

  /**
   * Runs one batch of tokenized rows: [rows, dims], or [rows, seqLen, dims] for NONE with seqLen the
   * longest row (callers pad to tokenLevelLength). Rows should be of similar length: the batch is
   * padded to its longest.
   */
  async run(rows: readonly TokenizedText[]): Promise<EncodeResult> {
    const batch = this.tokenizer.collate(rows);
    const dims = [batch.rows, batch.seqLen];
    const feeds: RuntimeFeeds = {
      input_ids: { data: batch.inputIds, dims },
      attention_mask: { data: batch.attentionMask, dims },
      token_type_ids: { data: batch.tokenTypeIds, dims },
    };
    if (this.graph.kind === 'pooled') {
      const out = await this.runtime.run(feeds, GRAPH_OUTPUT);
      return { data: out.data, shape: out.dims };
    }
    const hidden = await this.runtime.run(feeds, this.graph.output);
    return this.poolHidden(hidden.data, batch);
  }

  private poolHidden(hidden: Float32Array, batch: TokenizedBatch): EncodeResult {
    // A foreign export has one layer of hidden states: pool it with the reference's exact semantics.
    const layersOut: Float32Array[] = [];
    layersOut[this.modelConfig.numHiddenLayers - 1] = hidden;
    return referencePool({ config: this.modelConfig }, layersOut, batch, {
      poolingStrategy: this.info.poolingStrategy,
      poolingLayer: this.info.poolingLayer,
      normalize: this.info.normalize,
    });
  }

  /** Encodes any number of sentences; rows come back in input order. */
  async encode(texts: unknown, options: EncodeOptions = {}): Promise<EncodeResult> {
    const rows = await this.tokenize(texts, options);
    const n = rows.length;
    const dims = this.info.dims;
    // Shortest-first batches under the token budget keep padding small.
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => rows[a]!.length - rows[b]!.length);
    const longest = n === 0 ? 0 : rows[order[n - 1]!]!.length;
    const seqOut = this.info.tokenLevel ? this.tokenLevelLength(longest) : 1;
    const rowWidth = seqOut * dims;
    const data = new Float32Array(n * rowWidth);

    let start = 0;
    while (start < n) {
      let end = start + 1;
      while (end < n && end - start < this.batchLimits.rows && rows[order[end]!]!.length * (end - start + 1) <= this.batchLimits.tokens) end++;
      const slice = order.slice(start, end);
      const out = await this.run(slice.map((i) => rows[i]!));
      if (this.info.tokenLevel) {
        const s = out.shape[1]!;
        slice.forEach((rowIndex, k) => {
          // copy min(s, seqOut) token vectors; the rest of the row stays zero (padding)
          const copy = Math.min(s, seqOut) * dims;
          data.set(out.data.subarray(k * s * dims, k * s * dims + copy), rowIndex * rowWidth);
        });
      } else {
        slice.forEach((rowIndex, k) => data.set(out.data.subarray(k * dims, (k + 1) * dims), rowIndex * dims));
      }
      start = end;
    }
    const result: EncodeResult = { data, shape: this.info.tokenLevel ? [n, seqOut, dims] : [n, dims] };
    if (options.showTokens) result.tokens = rows.map((r) => r.tokens ?? []);
    return result;
  }

  async close(): Promise<void> {
    await this.runtime.close();
  }
}
