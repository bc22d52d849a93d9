/**
 * bert-as-service's server flags, in kebab-case, each with a BERTQ_* environment fallback, and their
 * translation into the model package's EncoderOptions.
 */
import { Flags } from '@oclif/core';
import { INT8_WEIGHT_BITS, POOLING_STRATEGIES, PRECISIONS } from '@bertq/model';
import type { EncoderOptions, Int8WeightBits, PoolingStrategy, Precision } from '@bertq/model';

const MODEL = 'MODEL';

export const modelFlags = {
  'model-dir': Flags.string({
    summary:
      'Folder of the pre-trained model: a Google BERT checkpoint (bert_config.json, vocab.txt, bert_model.ckpt.*) or a Hugging Face folder.',
    env: 'BERTQ_MODEL_DIR',
    helpGroup: MODEL,
    exclusive: ['model'],
  }),
  model: Flags.string({
    summary:
      'A model folder, an .onnx file (vocab beside it), or a Hugging Face id (downloaded once, HF_ENDPOINT/HF_TOKEN honoured).',
    env: 'BERTQ_MODEL',
    helpGroup: MODEL,
  }),
  'tuned-model-dir': Flags.string({
    summary: 'Folder of a fine-tuned checkpoint: its weights replace the pre-trained ones.',
    env: 'BERTQ_TUNED_MODEL_DIR',
    helpGroup: MODEL,
  }),
  'ckpt-name': Flags.string({
    summary: 'Checkpoint file prefix (default bert_model.ckpt).',
    env: 'BERTQ_CKPT_NAME',
    helpGroup: MODEL,
  }),
  'config-name': Flags.string({
    summary: 'Config file name in the model folder (default bert_config.json, or config.json for Hugging Face).',
    env: 'BERTQ_CONFIG_NAME',
    helpGroup: MODEL,
  }),
  'graph-tmp-dir': Flags.string({
    summary: 'Where built ONNX graphs are cached (default ~/.cache/bertq/graphs); a cached graph makes restarts fast.',
    env: 'BERTQ_GRAPH_TMP_DIR',
    helpGroup: MODEL,
  }),
  'max-seq-len': Flags.string({
    summary:
      'Longest sequence in tokens ([CLS]/[SEP] included); longer input is cut. NONE: the longest in each batch (slower, exact; too-long input is an error).',
    default: '25',
    env: 'BERTQ_MAX_SEQ_LEN',
    helpGroup: MODEL,
  }),
  'cased-tokenization': Flags.boolean({
    summary: 'Keep case and accents (cased and multilingual-cased models).',
    env: 'BERTQ_CASED_TOKENIZATION',
    helpGroup: MODEL,
  }),
  'mask-cls-sep': Flags.boolean({
    summary: 'Mask [CLS] and [SEP] out of attention and pooling.',
    env: 'BERTQ_MASK_CLS_SEP',
    helpGroup: MODEL,
  }),
  'no-special-token': Flags.boolean({
    summary: 'Do not add [CLS]/[SEP] to single sentences.',
    env: 'BERTQ_NO_SPECIAL_TOKEN',
    helpGroup: MODEL,
  }),
  'show-tokens-to-client': Flags.boolean({
    summary: 'Let clients ask for the tokens each sentence was encoded as (show_tokens).',
    env: 'BERTQ_SHOW_TOKENS_TO_CLIENT',
    helpGroup: MODEL,
  }),
  'fixed-embed-length': Flags.boolean({
    summary:
      'With max-seq-len NONE and pooling NONE, pad token output to max_position_embeddings so every result has one length.',
    env: 'BERTQ_FIXED_EMBED_LENGTH',
    helpGroup: MODEL,
  }),
  'pooling-strategy': Flags.option({
    summary: 'How token vectors become one sentence vector; NONE returns token vectors.',
    options: POOLING_STRATEGIES,
    default: 'REDUCE_MEAN' as PoolingStrategy,
    env: 'BERTQ_POOLING_STRATEGY',
    helpGroup: MODEL,
  })(),
  'pooling-layer': Flags.string({
    summary:
      'Layer(s) to pool: -1 last, -2 second-to-last; several (--pooling-layer=-1,-2) are concatenated. Shallower layers run faster.',
    default: '-2',
    env: 'BERTQ_POOLING_LAYER',
    helpGroup: MODEL,
  }),
  normalize: Flags.boolean({
    summary: 'L2-normalise every vector (for sentence-transformers models trained that way).',
    env: 'BERTQ_NORMALIZE',
    helpGroup: MODEL,
  }),
  precision: Flags.string({
    summary:
      'float32 (exact), float16 (GPUs: half the memory, ~1e-3 error) or int8 (CPUs: ~3× faster, cosine ≥ 0.99 to float32).',
    options: PRECISIONS,
    env: 'BERTQ_PRECISION',
    helpGroup: MODEL,
  }),
  'int8-weight-bits': Flags.string({
    summary:
      "With --precision int8: 8-bit weights where the CPU's int8 kernel sums exactly (VNNI, ARM), 7-bit where it saturates (AVX2, AVX-512BW without VNNI). Default: measured on this CPU. Give 7 on every host of a fleet that mixes both kinds, so they compute the same vectors.",
    options: INT8_WEIGHT_BITS.map(String),
    env: 'BERTQ_INT8_WEIGHT_BITS',
    helpGroup: MODEL,
  }),
  fp16: Flags.boolean({
    summary: "Alias of --precision float16 (bert-as-service's -fp16).",
    env: 'BERTQ_FP16',
    helpGroup: MODEL,
  }),
  fused: Flags.boolean({
    summary:
      "ONNX Runtime's fused transformer kernels. Default: on for GPUs (the fast path there), off on CPU (measured no faster; the plain graph runs on any ONNX runtime).",
    allowNo: true,
    env: 'BERTQ_FUSED',
    helpGroup: MODEL,
  }),
};

type ModelFlagValues = {
  'model-dir'?: string | undefined;
  model?: string | undefined;
  'tuned-model-dir'?: string | undefined;
  'ckpt-name'?: string | undefined;
  'config-name'?: string | undefined;
  'graph-tmp-dir'?: string | undefined;
  'max-seq-len': string;
  'cased-tokenization': boolean;
  'mask-cls-sep': boolean;
  'no-special-token': boolean;
  'fixed-embed-length': boolean;
  'pooling-strategy': PoolingStrategy;
  'pooling-layer': string;
  normalize: boolean;
  precision?: string | undefined;
  'int8-weight-bits'?: string | undefined;
  fp16: boolean;
  fused?: boolean | undefined;
};

export class FlagError extends Error {}

export function parseMaxSeqLen(text: string): number | null {
  if (/^none$/i.test(text.trim())) return null;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 3)
    throw new FlagError(`--max-seq-len must be an integer of at least 3 or NONE, got ${text}`);
  return n;
}

export function parseIntList(text: string, flag: string): number[] {
  const parts = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const out = parts.map(Number);
  if (parts.length === 0 || out.some((n) => !Number.isInteger(n)))
    throw new FlagError(`${flag} takes integers separated by commas, got ${text}`);
  return out;
}

export function encoderOptionsFromFlags(f: ModelFlagValues): EncoderOptions {
  const opts: EncoderOptions = {
    poolingStrategy: f['pooling-strategy'],
    poolingLayer: parseIntList(f['pooling-layer'], '--pooling-layer'),
    maxSeqLen: parseMaxSeqLen(f['max-seq-len']),
    maskClsSep: f['mask-cls-sep'],
    noSpecialToken: f['no-special-token'],
    fixedEmbedLength: f['fixed-embed-length'],
    fp16: f.fp16,
    normalize: f.normalize,
  };
  if (!f.model && !f['model-dir'])
    throw new FlagError(
      'no model: give --model-dir (a model folder) or --model (a folder, an .onnx file or a Hugging Face id)',
    );
  if (f.model) opts.model = f.model;
  if (f['model-dir']) opts.modelDir = f['model-dir'];
  if (f['tuned-model-dir']) opts.tunedModelDir = f['tuned-model-dir'];
  if (f['config-name']) opts.configName = f['config-name'];
  if (f['ckpt-name']) opts.ckptName = f['ckpt-name'];
  if (f['graph-tmp-dir']) opts.graphTmpDir = f['graph-tmp-dir'];
  if (f['cased-tokenization']) opts.casedTokenization = true;
  if (f.fused !== undefined) opts.fused = f.fused;
  if (f.precision !== undefined) {
    if (f.fp16 && f.precision !== 'float16')
      throw new FlagError(`--fp16 contradicts --precision ${f.precision}: give one of them`);
    opts.precision = f.precision as Precision;
  }
  if (f['int8-weight-bits'] !== undefined) {
    if (opts.precision !== 'int8') throw new FlagError('--int8-weight-bits needs --precision int8');
    opts.int8WeightBits = Number(f['int8-weight-bits']) as Int8WeightBits;
  }
  return opts;
}
