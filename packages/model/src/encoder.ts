/**
 * The in-process encoder: a model folder (or `.onnx` file, or hub id) and a list of sentences in,
 * vectors out. The worker runs exactly this; users can too, without NATS.
 *
 *   const enc = await Encoder.load({ model: '/models/uncased_L-12_H-768_A-12' });
 *   const { data, shape } = await enc.encode(['First do it', 'then do it right']);
 *
 * `load` is `prepareModel` (resolve the files, build or take the cached ONNX graph with the pooling
 * inside it) followed by `open` (load the tokenizer, open the graph in ONNX Runtime, run one warm-up
 * row). A fleet prepares once and has each worker only open. Encoding tokenizes, groups rows of
 * similar length into batches under a token budget, runs them, and puts rows back in order.
 */
import type { Int8Kernel } from './int8-kernel.js';
import { BadRequestError, ModelError } from '@bertq/protocol';
import type { CutRule } from '@bertq/protocol';
import { DEVICE_PROFILES } from './devices.js';
import type { Device, Precision } from './devices.js';
import type { ResolvedModelSource, SentenceTransformersHint } from './folder.js';
import { GRAPH_INPUTS, GRAPH_OUTPUT, isTokenLevel, layersNeeded, outputDim } from './graph.js';
import { prepareModel } from './prepare.js';
import type { PrepareOptions, PreparedModel } from './prepare.js';
import { referencePool } from './reference.js';
import { createRuntime } from './runtime.js';
import type { Runtime, RuntimeFeeds } from './runtime.js';
import { BertTokenizer } from './tokenizer.js';
import type { TokenizedText } from './tokenizer.js';
import type { BertConfig, PoolingStrategy, TokenizedBatch } from './types.js';

/** Where and how a prepared model runs: nothing here changes the vectors. */
export interface OpenOptions {
  device?: Device;
  deviceId?: number;
  /** Inference threads; default all cores. A fleet of N CPU workers gives each cores/N. */
  threads?: number;
  /** Rows per inference batch inside encode(). Default 256 (bert-as-service's max_batch_size). */
  maxBatchSize?: number;
  /** Padded tokens (rows × longest) per inference batch inside encode(). Default: the device's (DEVICE_PROFILES). */
  maxBatchTokens?: number;
  /**
   * Compute from the weights mapped from the cached graph's data file, which every worker on the
   * machine then shares, instead of a private copy repacked for speed (see RuntimeOptions). CPU only.
   * A foreign .onnx file shares only if its weights are in an external data file; with the weights
   * inside the .onnx it gains nothing and still loses the repacking's speed.
   */
  sharedWeights?: boolean;
}

export interface EncoderOptions extends PrepareOptions, OpenOptions {}

export interface EncodeOptions {
  /** Rows are token lists, not strings: no wordpiece split, unknown tokens become [UNK]. */
  isTokenized?: boolean;
  /** Return the tokens each row was encoded as. */
  showTokens?: boolean;
  /** The rows were validated already (validateTexts, at the caller's entry point): skip the check. */
  validated?: boolean;
}

export interface EncodeResult {
  /** Row-major vectors of `shape`. */
  data: Float32Array;
  /** [rows, dims], or [rows, seqLen, dims] for NONE pooling. */
  shape: number[];
  tokens?: string[][];
  /** Set by run(): milliseconds the model computed the batch (the runtime thread's own time). */
  computeMs?: number;
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
  precision: Precision;
  /** precision === 'float16' (bert-as-service's fp16, as the `config` endpoint reports it). */
  fp16: boolean;
  /** precision int8: the CPU's int8 kernel and the weight width chosen for it (int8-kernel.ts). */
  int8Kernel?: Int8Kernel;
  normalize: boolean;
  fused: boolean;
  /** Weights mapped from the graph's data file and shared by every worker on the machine (see OpenOptions). */
  sharedWeights: boolean;
  device: Device;
  /** What the model computes (weights, graph options, tokenization): see PreparedModel.fingerprint. */
  fingerprint: string;
  /** The ONNX file in use (a cached build, or the given `.onnx`). */
  graphPath: string;
  graphCacheHit: boolean;
  /** How texts may be cut before tokenizing without changing their kept tokens; undefined: never. */
  textCut?: CutRule;
  sentenceTransformers?: SentenceTransformersHint;
}

const DEFAULT_MAX_BATCH_SIZE = 256;
/** Default padded-token budget of one inference batch on `device`. */
export function defaultMaxBatchTokens(device: Device): number {
  return DEVICE_PROFILES[device].maxBatchTokens;
}
const HIDDEN_STATE_OUTPUTS = ['last_hidden_state', 'hidden_states', 'output_0'];

/** How the graph's output relates to what encode() returns. */
type GraphKind =
  | { kind: 'pooled' }
  /** A foreign ONNX export that returns [B, S, H] hidden states: bertq pools them in TypeScript. */
  | { kind: 'hidden'; output: string };

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

  /** Prepares the model (see prepareModel) and opens it. */
  static async load(options: EncoderOptions): Promise<Encoder> {
    return Encoder.open(await prepareModel(options), options);
  }

  /** Opens a prepared model: tokenizer, ONNX Runtime session, one warm-up row. */
  static async open(prepared: PreparedModel, options: OpenOptions = {}): Promise<Encoder> {
    const device = options.device ?? 'cpu';
    const { config, graphOptions, graphPath } = prepared;
    const tokenizerOpts = {
      maxPositionEmbeddings: config.maxPositionEmbeddings,
      maxSeqLen: prepared.maxSeqLen,
      cased: prepared.casedTokenization,
    };
    const tokenizer =
      prepared.tokenizer.kind === 'tokenizer-json'
        ? await BertTokenizer.fromTokenizerJson(prepared.tokenizer.path, tokenizerOpts)
        : await BertTokenizer.fromVocabFile(prepared.tokenizer.path, tokenizerOpts);
    const limits = {
      rows: options.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE,
      tokens: options.maxBatchTokens ?? defaultMaxBatchTokens(device),
    };
    if (!(limits.rows >= 1) || !(limits.tokens >= 1))
      throw new BadRequestError('maxBatchSize and maxBatchTokens must be at least 1');

    const sharedWeights = options.sharedWeights === true && device === 'cpu';
    const runtime = await createRuntime(graphPath, {
      device,
      deviceId: options.deviceId,
      threads: options.threads,
      sharedWeights,
    });
    let graph: GraphKind = { kind: 'pooled' };
    try {
      graph = graphKind(runtime, prepared);
    } catch (err) {
      await runtime.close();
      throw err;
    }
    const info: EncoderInfo = {
      model: prepared.model,
      source: prepared.source,
      dims: outputDim(config, graphOptions),
      tokenLevel: isTokenLevel(graphOptions.poolingStrategy),
      hiddenSize: config.hiddenSize,
      numHiddenLayers: config.numHiddenLayers,
      layersComputed:
        graph.kind === 'hidden' ? config.numHiddenLayers : layersNeeded(graphOptions, config.numHiddenLayers),
      vocabSize: tokenizer.vocabSize,
      maxPositionEmbeddings: config.maxPositionEmbeddings,
      maxSeqLen: prepared.maxSeqLen,
      poolingStrategy: graphOptions.poolingStrategy,
      poolingLayer: graphOptions.poolingLayer,
      casedTokenization: prepared.casedTokenization,
      maskClsSep: prepared.maskClsSep,
      noSpecialToken: prepared.noSpecialToken,
      fixedEmbedLength: prepared.fixedEmbedLength,
      precision: graphOptions.precision,
      fp16: graphOptions.precision === 'float16',
      normalize: graphOptions.normalize,
      fused: graphOptions.fused,
      sharedWeights,
      device: runtime.device,
      fingerprint: prepared.fingerprint,
      graphPath,
      graphCacheHit: prepared.graphCacheHit,
      ...(tokenizer.cutRule === undefined ? {} : { textCut: tokenizer.cutRule }),
    };
    if (prepared.sentenceTransformers) info.sentenceTransformers = prepared.sentenceTransformers;
    if (prepared.int8Kernel) info.int8Kernel = prepared.int8Kernel;
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
      validated: options.validated === true,
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
      return { data: out.data, shape: out.dims, computeMs: out.computeMs };
    }
    const hidden = await this.runtime.run(feeds, this.graph.output);
    return { ...this.poolHidden(hidden.data, batch), computeMs: hidden.computeMs };
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
      while (
        end < n &&
        end - start < this.batchLimits.rows &&
        rows[order[end]!]!.length * (end - start + 1) <= this.batchLimits.tokens
      )
        end++;
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
        slice.forEach((rowIndex, k) => {
          data.set(out.data.subarray(k * dims, (k + 1) * dims), rowIndex * dims);
        });
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

/** What the graph returns: bertq's pooled output, or a foreign export's hidden states (pooled in TS). */
function graphKind(runtime: Runtime, prepared: PreparedModel): GraphKind {
  const { graphPath, config } = prepared;
  const { poolingLayer, poolingStrategy } = prepared.graphOptions;
  for (const name of runtime.inputNames) {
    if (!(GRAPH_INPUTS as readonly string[]).includes(name)) {
      throw new ModelError(`${graphPath} has an input ${name}; bertq feeds ${GRAPH_INPUTS.join(', ')}`);
    }
  }
  if (runtime.outputNames.includes(GRAPH_OUTPUT)) return { kind: 'pooled' };
  const hidden = HIDDEN_STATE_OUTPUTS.find((o) => runtime.outputNames.includes(o));
  if (!hidden) {
    throw new ModelError(
      `${graphPath} has neither an '${GRAPH_OUTPUT}' output (bertq graph) nor a hidden-state output (${HIDDEN_STATE_OUTPUTS.join(', ')}); it has ${runtime.outputNames.join(', ')}`,
    );
  }
  const deepest = Math.max(...poolingLayer.map((l) => (l < 0 ? config.numHiddenLayers + l : l)));
  if (poolingLayer.length !== 1 || deepest !== config.numHiddenLayers - 1) {
    throw new BadRequestError(
      `${graphPath} only returns the last layer's hidden states: pooling_layer must be -1, got ${poolingLayer}`,
    );
  }
  if (poolingStrategy === 'CLS_POOLED') {
    throw new BadRequestError(`${graphPath} has no pooler output: CLS_POOLED needs a model folder with weights`);
  }
  return { kind: 'hidden', output: hidden };
}
