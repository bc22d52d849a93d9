/**
 * Model preparation, done once: resolve the model (download a hub id, find the files of a folder),
 * read its config, pick its tokenizer files, and build the ONNX graph (or take it from the cache),
 * all without opening the model's ONNX Runtime session (precision int8 runs one tiny probe graph to
 * learn this CPU's int8 kernel: int8-kernel.ts). The result is plain JSON, so a fleet supervisor can
 * prepare once per device configuration and hand it to every worker, which only opens it.
 *
 *   const prepared = await prepareModel({ model: '/models/bert', device: 'cuda' });
 *   const encoder = await Encoder.open(prepared, { device: 'cuda', deviceId: 1 });
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BadRequestError, ModelError } from '@bertq/protocol';
import { parseBertConfig, readBertConfig } from './config.js';
import { DEVICE_PROFILES, PRECISIONS } from './devices.js';
import type { Device, Precision } from './devices.js';
import { resolveModelSource } from './folder.js';
import type { ModelSourceOptions, ResolvedModelSource, SentenceTransformersHint } from './folder.js';
import { buildBertGraphFiles, layersNeeded } from './graph.js';
import { GraphCache, canonicalHash, fileContentHash, graphCacheKey } from './graph-cache.js';
import { defaultCacheDir, downloadModel, isHubModelId } from './hub/index.js';
import type { DownloadModelOptions } from './hub/index.js';
import { detectInt8Kernel } from './int8-kernel.js';
import type { Int8Kernel } from './int8-kernel.js';
import { readOnnxMetadata } from './onnx/metadata.js';
import { INT8_WEIGHT_BITS } from './onnx/quantize.js';
import type { Int8WeightBits } from './onnx/quantize.js';
import { DEFAULT_MAX_SEQ_LEN } from './tokenizer.js';
import { POOLING_STRATEGIES } from './types.js';
import type { BertConfig, GraphOptions, PoolingStrategy } from './types.js';
import { loadModelWeights } from './weights.js';

/** What decides the model, its graph and its tokenization: everything but where a session runs. */
export interface PrepareOptions extends ModelSourceOptions {
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
   * allows is a TOO_LONG error; the string `'NONE'` (bert-as-service's spelling) means the same.
   * Default 25: cheap and enough for short sentences; raise it for documents.
   */
  maxSeqLen?: number | null | 'NONE';
  /** Keep case and accents (for cased and multilingual-cased models). Default: the tokenizer's own setting. */
  casedTokenization?: boolean;
  /** Exclude [CLS] and [SEP] from attention and pooling (bert-as-service's mask_cls_sep). */
  maskClsSep?: boolean;
  /** Do not add [CLS]/[SEP] to single sentences. */
  noSpecialToken?: boolean;
  /** With NONE pooling and maxSeqLen null, pad token-level output to max_position_embeddings so every result has the same length. */
  fixedEmbedLength?: boolean;
  /**
   * Weights and compute precision. float32 (default) is exact; float16 halves the memory and is
   * faster on GPUs, at ~1e-3 relative error; int8 (CPU only) quarters the weights and is ~3× faster
   * on CPUs with VNNI, at cosine ≥ 0.99 to float32.
   */
  precision?: Precision;
  /** Alias of `precision: 'float16'` (bert-as-service's -fp16). */
  fp16?: boolean;
  /**
   * precision int8: the width of the int8 weights. Default: 8 where this CPU's int8 kernel sums
   * exactly (VNNI, ARM), 7 where it saturates (AVX2, AVX-512BW without VNNI): measured, not guessed
   * (int8-kernel.ts). Set 7 on every host of a fleet that mixes both kinds of CPU, so all of them
   * compute the same vectors (one fingerprint); 8 is refused where the kernel saturates.
   */
  int8WeightBits?: Int8WeightBits;
  /** L2-normalise each vector (what sentence-transformers models with a Normalize module expect). */
  normalize?: boolean;
  /** Use ONNX Runtime's fused transformer kernels. Default: the device's (DEVICE_PROFILES). */
  fused?: boolean;
  /** The device the graph is meant for: it decides the defaults above. Default cpu. */
  device?: Device;
  /** Where built graphs are cached (bert-as-service's graph_tmp_dir). Default `<cache>/graphs`. */
  graphTmpDir?: string;
  /** Options for hub downloads when `model` is a Hugging Face id (`onProgress` to draw a bar). */
  hub?: Omit<DownloadModelOptions, 'signal'>;
}

/** Which tokenizer file to load, and how. */
export interface TokenizerSource {
  kind: 'vocab' | 'tokenizer-json';
  path: string;
}

/** A model ready to open: plain JSON (it crosses process boundaries). */
export interface PreparedModel {
  /** The model as the user named it (folder, file or hub id). */
  model: string;
  source: ResolvedModelSource['kind'];
  config: BertConfig;
  /** The final graph options (defaults applied, or as an `.onnx` file was built). */
  graphOptions: GraphOptions;
  /** The ONNX file to open (a cached build, or the given `.onnx`). */
  graphPath: string;
  graphCacheHit: boolean;
  tokenizer: TokenizerSource;
  maxSeqLen: number | null;
  casedTokenization: boolean | undefined;
  maskClsSep: boolean;
  noSpecialToken: boolean;
  fixedEmbedLength: boolean;
  /** Content hash of the weight files (sha256 of each, joined). */
  weightsHash: string;
  /**
   * What the model computes: the weights, the graph options and every tokenization setting. Two
   * models with one fingerprint give the same vectors for the same text (whatever the device).
   */
  fingerprint: string;
  sentenceTransformers?: SentenceTransformersHint;
  /** precision int8: the int8 kernel this CPU runs, as probed when the model was prepared. */
  int8Kernel?: Int8Kernel;
}

const DEFAULT_POOLING: PoolingStrategy = 'REDUCE_MEAN';
const DEFAULT_POOLING_LAYER = [-2];

let float16OnCpuWarned = false;

/**
 * float16 on a CPU is float16 weights with float32 compute: ONNX Runtime's x86 CPU kernels have no
 * float16 for these ops, so it inserts casts and keeps both copies. Measured on the BERT-base shape
 * (docs/benchmarks.md): file 436 → 218 MB, but RSS 832 → 1069 MiB and 71 → 66 sent/s. Said once.
 */
function warnFloat16OnCpu(): void {
  if (float16OnCpuWarned) return;
  float16OnCpuWarned = true;
  process.emitWarning(
    'precision float16 on a CPU halves the graph file but not the work: ONNX Runtime computes it in float32 from casts of the weights, so it takes more memory than float32 and is no faster. On a CPU use precision int8 (3x float32, half its memory); float16 is for GPUs',
    'BertqPrecisionWarning',
  );
}

/** Resolves, downloads and builds the graph; opens no ONNX Runtime session. */
export async function prepareModel(options: PrepareOptions): Promise<PreparedModel> {
  const device = options.device ?? 'cpu';
  const precision = resolvePrecision(options);
  if (precision === 'int8' && device !== 'cpu') {
    throw new BadRequestError(
      `precision int8 runs on CPUs only (ONNX Runtime's DynamicQuantizeMatMul has no ${device} kernel): on a GPU use precision float16`,
    );
  }
  if (precision === 'float16' && device === 'cpu') warnFloat16OnCpu();
  const graphOptions: GraphOptions = {
    poolingStrategy: checkStrategy(options.poolingStrategy ?? DEFAULT_POOLING),
    poolingLayer: normalizeLayers(options.poolingLayer),
    precision,
    normalize: options.normalize ?? false,
    fused: options.fused ?? DEVICE_PROFILES[device].fusedByDefault,
  };
  let int8Kernel = precision === 'int8' ? await detectInt8Kernel() : undefined;
  if (int8Kernel) graphOptions.int8WeightBits = int8WeightBits(options.int8WeightBits, int8Kernel);
  const maxSeqLen = resolveMaxSeqLen(options.maxSeqLen);
  const cacheRoot = options.hub?.cacheDir ?? defaultCacheDir();
  const graphDir = options.graphTmpDir ?? join(cacheRoot, 'graphs');

  const where = options.model ?? options.modelDir;
  if (where === undefined)
    throw new BadRequestError('no model given: set `model` (a folder, an .onnx file or a hub id) or `modelDir`');
  let sourceOptions: ModelSourceOptions = options;
  if (options.model !== undefined && isHubModelId(options.model)) {
    sourceOptions = { ...options, model: await downloadModel(options.model, options.hub) };
  }
  const source = await resolveModelSource(sourceOptions);
  const weightsHash = await sourceWeightsHash(source, cacheRoot);

  let config: BertConfig;
  let graphPath: string;
  let graphCacheHit = false;
  if (source.kind === 'onnx') {
    // Config from bertq's own metadata, or from a config.json beside a foreign export.
    const meta = readOnnxMetadata(await readFile(source.onnxPath));
    if (meta['bertq.config']) {
      config = parseBertConfig(JSON.parse(meta['bertq.config']), `${source.onnxPath} (bertq metadata)`);
      adoptBuiltOptions(
        source.onnxPath,
        graphOptions,
        options,
        JSON.parse(meta['bertq.options'] ?? '{}') as BuiltOptions,
      );
      if (graphOptions.precision === 'int8') {
        int8Kernel ??= await detectInt8Kernel();
        checkBuiltInt8Weights(source.onnxPath, graphOptions, options, int8Kernel);
      } else {
        int8Kernel = undefined;
        delete graphOptions.int8WeightBits;
        onlyForInt8(options, graphOptions);
      }
    } else if (source.configPath) {
      config = await readBertConfig(source.configPath);
    } else {
      throw new ModelError(
        `${source.onnxPath} was not built by bertq and has no config.json beside it: cannot tell its max_position_embeddings`,
        {
          details: { file: join(source.onnxPath, '..', 'config.json') },
        },
      );
    }
    graphPath = source.onnxPath;
  } else {
    onlyForInt8(options, graphOptions);
    config = await readBertConfig(source.configPath);
    const cache = new GraphCache(graphDir);
    const key = graphCacheKey(weightsHash, graphOptions);
    const hit = await cache.get(key);
    if (hit) {
      graphPath = hit;
      graphCacheHit = true;
    } else {
      const weights = await loadModelWeights(source, {
        numLayers: layersNeeded(graphOptions, config.numHiddenLayers),
        includePooler: graphOptions.poolingStrategy === 'CLS_POOLED',
      });
      graphPath = await cache.put(key, buildBertGraphFiles(weights, graphOptions, cache.dataLocationFor(key)));
    }
  }

  const tokenizerSettings = {
    maxSeqLen,
    casedTokenization: options.casedTokenization,
    maskClsSep: options.maskClsSep ?? false,
    noSpecialToken: options.noSpecialToken ?? false,
    fixedEmbedLength: options.fixedEmbedLength ?? false,
  };
  const tokenizer = tokenizerSource(source, where);
  // `fused` changes how the graph computes, not what: it stays out of the fingerprint.
  const { fused: _fused, ...computed } = graphOptions;
  const prepared: PreparedModel = {
    model: where,
    source: source.kind,
    config,
    graphOptions,
    graphPath,
    graphCacheHit,
    tokenizer,
    ...tokenizerSettings,
    weightsHash,
    fingerprint: canonicalHash({ weightsHash, graph: computed, tokenizer: tokenizerSettings }),
  };
  if ('sentenceTransformers' in source && source.sentenceTransformers)
    prepared.sentenceTransformers = source.sentenceTransformers;
  if (int8Kernel) prepared.int8Kernel = int8Kernel;
  return prepared;
}

/** The int8 weight width: as asked, or what the kernel sums exactly; never 8 where it saturates. */
function int8WeightBits(asked: Int8WeightBits | undefined, kernel: Int8Kernel): Int8WeightBits {
  if (asked !== undefined && !INT8_WEIGHT_BITS.includes(asked))
    throw new BadRequestError(`int8WeightBits must be 7 or 8, got ${JSON.stringify(asked)}`);
  if (asked === 8 && !kernel.exact) throw saturatingKernelError('8-bit int8 weights were asked for', kernel);
  return asked ?? kernel.weightBits;
}

function onlyForInt8(asked: PrepareOptions, graphOptions: GraphOptions): void {
  if (asked.int8WeightBits !== undefined && graphOptions.precision !== 'int8')
    throw new BadRequestError(`int8WeightBits is for precision int8, not ${graphOptions.precision}`);
}

function saturatingKernelError(what: string, kernel: Int8Kernel): BadRequestError {
  return new BadRequestError(
    `${what}, but this CPU's int8 kernel (${kernel.isa}) sums pairs of products in 16 bits, which saturate: vectors would fall to cosine ~0.96 of float32. Use 7-bit weights (int8WeightBits 7, the default here) or precision float32`,
    { details: { int8_kernel: kernel.path } },
  );
}

export function resolvePrecision(options: { precision?: Precision; fp16?: boolean }): Precision {
  if (options.precision !== undefined && !(PRECISIONS as readonly string[]).includes(options.precision)) {
    throw new BadRequestError(
      `unknown precision ${JSON.stringify(options.precision)}: use one of ${PRECISIONS.join(', ')}`,
    );
  }
  if (options.fp16 === true && options.precision !== undefined && options.precision !== 'float16') {
    throw new BadRequestError(`fp16 contradicts precision ${options.precision}: give one of them`);
  }
  return options.precision ?? (options.fp16 === true ? 'float16' : 'float32');
}

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

/** Graph options as bertq's `.onnx` metadata records them (older builds wrote `fp16`). */
type BuiltOptions = Partial<GraphOptions> & { fp16?: boolean };

/** A bertq-built `.onnx` file fixes its graph options: adopt them, refusing a contradicting request. */
function adoptBuiltOptions(path: string, graphOptions: GraphOptions, asked: PrepareOptions, built: BuiltOptions): void {
  const builtPrecision: Precision = built.precision ?? (built.fp16 === true ? 'float16' : 'float32');
  const have: Partial<GraphOptions> = { ...built, precision: builtPrecision };
  const requested = {
    poolingStrategy: asked.poolingStrategy,
    poolingLayer: asked.poolingLayer,
    precision: asked.precision ?? (asked.fp16 === undefined ? undefined : resolvePrecision(asked)),
    normalize: asked.normalize,
  };
  for (const key of ['poolingStrategy', 'poolingLayer', 'precision', 'normalize'] as const) {
    const want = JSON.stringify(graphOptions[key]);
    const got = JSON.stringify(have[key]);
    if (requested[key] !== undefined && want !== got) {
      throw new BadRequestError(
        `${path} was built with ${key} ${got}, but ${want} was asked for: rebuild it from the weights, or drop the option`,
      );
    }
    (graphOptions as unknown as Record<string, unknown>)[key] = have[key];
  }
  // int8 graphs built before int8WeightBits existed hold 8-bit weights.
  if (builtPrecision === 'int8') graphOptions.int8WeightBits = built.int8WeightBits ?? 8;
}

/** A bertq-built int8 `.onnx` file: its weight width as asked, and one this CPU sums exactly. */
function checkBuiltInt8Weights(
  path: string,
  graphOptions: GraphOptions,
  asked: PrepareOptions,
  kernel: Int8Kernel,
): void {
  const bits = graphOptions.int8WeightBits!; // adoptBuiltOptions set it (8 for graphs older than the option)
  if (asked.int8WeightBits !== undefined && asked.int8WeightBits !== bits)
    throw new BadRequestError(
      `${path} was built with ${bits}-bit int8 weights, but ${asked.int8WeightBits} were asked for: rebuild it from the weights, or drop the option`,
    );
  if (bits === 8 && !kernel.exact) throw saturatingKernelError(`${path} holds 8-bit int8 weights`, kernel);
}

/** A Hugging Face tokenizer.json carries the model's own normaliser (cased or not): prefer it there. */
function tokenizerSource(source: ResolvedModelSource, where: string): TokenizerSource {
  const vocabPath = 'vocabPath' in source ? source.vocabPath : undefined;
  const tokenizerJsonPath = 'tokenizerJsonPath' in source ? source.tokenizerJsonPath : undefined;
  if (source.kind !== 'checkpoint' && tokenizerJsonPath) return { kind: 'tokenizer-json', path: tokenizerJsonPath };
  if (vocabPath) return { kind: 'vocab', path: vocabPath };
  if (tokenizerJsonPath) return { kind: 'tokenizer-json', path: tokenizerJsonPath };
  throw new ModelError(`no vocab.txt or tokenizer.json beside ${where}`, {
    details: { file: join(where, 'vocab.txt') },
  });
}

/** `maxSeqLen` as the tokenizer takes it: the default when left out, null for NONE in any case. */
function resolveMaxSeqLen(value: number | null | 'NONE' | undefined): number | null {
  if (value === undefined) return DEFAULT_MAX_SEQ_LEN;
  if (typeof value === 'string' && value.trim().toUpperCase() === 'NONE') return null;
  return value as number | null;
}
