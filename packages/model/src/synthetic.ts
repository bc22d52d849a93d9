/**
 * Deterministic synthetic BERT weights, for tests and benchmarks that need a model of a given shape
 * without downloading one.
 *
 * Same config + seed => bit-identical weights on every machine: values come only from integer
 * arithmetic (xoshiro128**), one multiply-add in float64 and a rounding to float32 — no Math.random,
 * no Math.log/cos (whose last bits may differ between platforms).
 *
 * Every tensor draws from its own stream, seeded from (seed, tensor name). So layer 3 is the same
 * whether the model has 4 or 12 layers, and a different vocabulary size leaves the encoder untouched.
 */
import { BadRequestError } from '@bertq/protocol';
import type { BertConfig, BertWeights, EncoderLayerWeights, LayerNormWeights, LinearWeights, Tensor } from './types.js';

export interface SyntheticWeightsOptions {
  /**
   * Multiplies the standard deviation of every kernel and embedding table (default 1). Larger values
   * give sharper attention and larger pre-activations; smaller values push the model towards
   * uniform attention and near-linear activations.
   */
  scale?: number;
}

/**
 * A small BERT that still uses the real bert-base-uncased vocabulary size (so real token ids fit),
 * with room for 64 positions. Every field can be overridden.
 */
export function tinyBertConfig(overrides: Partial<BertConfig> = {}): BertConfig {
  return {
    vocabSize: 30522,
    hiddenSize: 32,
    numHiddenLayers: 4,
    numAttentionHeads: 4,
    intermediateSize: 64,
    hiddenAct: 'gelu',
    maxPositionEmbeddings: 64,
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    modelType: 'bert',
    ...overrides,
  };
}

/** The shape of bert-base-uncased: 12 layers, hidden 768, 12 heads, intermediate 3072, 512 positions. */
export function bertBaseConfig(): BertConfig {
  return {
    vocabSize: 30522,
    hiddenSize: 768,
    numHiddenLayers: 12,
    numAttentionHeads: 12,
    intermediateSize: 3072,
    hiddenAct: 'gelu',
    maxPositionEmbeddings: 512,
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    modelType: 'bert',
  };
}

// Standard deviations. Kernels use 1/sqrt(fan_in) rather than BERT's 0.02 initialiser: with 0.02 a
// hidden-32 model has attention scores of ~0.01 (uniform attention) and an attention branch ~1% of
// the residual, so a masking bug would hide in the 4th decimal. With 1/sqrt(fan_in) the scores have
// a standard deviation near 1 and every sub-layer moves the output visibly.
const EMBEDDING_STD = 0.02;
const BIAS_STD = 0.02;
const GAMMA_STD = 0.05;
const BETA_STD = 0.02;

/** xoshiro128** state (four 32-bit words), advanced in place. */
type Xoshiro = Uint32Array;

/** 32-bit FNV-1a of a string's UTF-16 code units, mixed with a seed: a stream id per tensor name. */
function streamId(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0) ^ Math.imul(Math.floor(seed / 0x100000000) >>> 0, 0x9e3779b1);
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Seeds xoshiro128** with splitmix32 (never all-zero state, well-mixed even for nearby ids). */
function seedXoshiro(id: number): Xoshiro {
  const state = new Uint32Array(4);
  let x = id >>> 0;
  for (let i = 0; i < 4; i++) {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    state[i] = (z ^ (z >>> 16)) >>> 0;
  }
  if ((state[0]! | state[1]! | state[2]! | state[3]!) === 0) state[0] = 1;
  return state;
}

// Irwin–Hall(4) over 16-bit uniforms: sum of four integers in [0, 65535]. Its mean and the reciprocal
// of its standard deviation, sqrt(3 / (65536^2 - 1)), are literals so no platform math is involved.
const IRWIN_HALL_MEAN = 131070;
const IRWIN_HALL_INV_STD = 2.6428997921303018e-5;

/**
 * Fills `out` with mean + std * z, z approximately standard normal (Irwin–Hall of four 16-bit
 * uniforms: unit variance, bounded at ±3.46 like BERT's truncated-normal initialiser). Two
 * xoshiro128** draws per element; the state lives in locals so the loop stays tight.
 */
function fillApproxNormal(out: Float32Array, state: Xoshiro, mean: number, std: number): void {
  let s0 = state[0]!;
  let s1 = state[1]!;
  let s2 = state[2]!;
  let s3 = state[3]!;
  const k = std * IRWIN_HALL_INV_STD;
  for (let i = 0; i < out.length; i++) {
    // Draw 1.
    let r = Math.imul(s1, 5);
    r = Math.imul((r << 7) | (r >>> 25), 9) >>> 0;
    let t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    let sum = (r & 0xffff) + (r >>> 16);
    // Draw 2.
    r = Math.imul(s1, 5);
    r = Math.imul((r << 7) | (r >>> 25), 9) >>> 0;
    t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    sum += (r & 0xffff) + (r >>> 16);
    out[i] = mean + (sum - IRWIN_HALL_MEAN) * k;
  }
  state[0] = s0;
  state[1] = s1;
  state[2] = s2;
  state[3] = s3;
}

/**
 * Deterministic pseudo-random BERT weights for `config`, pooler included.
 *
 * Kernels ~ N(0, scale / sqrt(fan_in)), embeddings ~ N(0, 0.02 * scale), biases ~ N(0, 0.02),
 * LayerNorm gamma ~ 1 + N(0, 0.05), beta ~ N(0, 0.02) (all "N" bounded at ±3.46 sigma).
 * A bert-base shape (~110M parameters) takes about a second.
 */
export function syntheticBertWeights(
  config: BertConfig,
  seed: number,
  opts: SyntheticWeightsOptions = {},
): BertWeights {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new BadRequestError(`syntheticBertWeights: seed must be a non-negative safe integer, got ${seed}`);
  }
  const scale = opts.scale ?? 1;
  if (!(Number.isFinite(scale) && scale > 0)) {
    throw new BadRequestError(`syntheticBertWeights: scale must be a positive finite number, got ${scale}`);
  }
  for (const key of [
    'vocabSize',
    'hiddenSize',
    'numHiddenLayers',
    'numAttentionHeads',
    'intermediateSize',
    'maxPositionEmbeddings',
    'typeVocabSize',
  ] as const) {
    const v = config[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new BadRequestError(`syntheticBertWeights: config.${key} must be a positive integer, got ${v}`);
    }
  }

  const tensor = (name: string, shape: number[], mean: number, std: number): Tensor => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    fillApproxNormal(data, seedXoshiro(streamId(seed, name)), mean, std);
    return { shape, data };
  };
  const linear = (name: string, inSize: number, outSize: number): LinearWeights => ({
    kernel: tensor(`${name}.kernel`, [inSize, outSize], 0, scale / Math.sqrt(inSize)),
    bias: tensor(`${name}.bias`, [outSize], 0, BIAS_STD),
  });
  const layerNorm = (name: string, size: number): LayerNormWeights => ({
    gamma: tensor(`${name}.gamma`, [size], 1, GAMMA_STD),
    beta: tensor(`${name}.beta`, [size], 0, BETA_STD),
  });

  const h = config.hiddenSize;
  const layers: EncoderLayerWeights[] = [];
  for (let l = 0; l < config.numHiddenLayers; l++) {
    const p = `layer.${l}`;
    layers.push({
      query: linear(`${p}.attention.query`, h, h),
      key: linear(`${p}.attention.key`, h, h),
      value: linear(`${p}.attention.value`, h, h),
      attentionOutput: linear(`${p}.attention.output`, h, h),
      attentionLayerNorm: layerNorm(`${p}.attention.layer_norm`, h),
      intermediate: linear(`${p}.intermediate`, h, config.intermediateSize),
      output: linear(`${p}.output`, config.intermediateSize, h),
      outputLayerNorm: layerNorm(`${p}.output.layer_norm`, h),
    });
  }

  return {
    config: { ...config },
    embeddings: {
      word: tensor('embeddings.word', [config.vocabSize, h], 0, EMBEDDING_STD * scale),
      position: tensor('embeddings.position', [config.maxPositionEmbeddings, h], 0, EMBEDDING_STD * scale),
      tokenType: tensor('embeddings.token_type', [config.typeVocabSize, h], 0, EMBEDDING_STD * scale),
      layerNorm: layerNorm('embeddings.layer_norm', h),
    },
    layers,
    pooler: linear('pooler', h, h),
  };
}

/**
 * A small WordPiece vocabulary in BERT's layout ([PAD]=0, [UNK], [CLS], [SEP], [MASK], characters,
 * ##-continuations, a few hundred common words), for when the real bert-base vocab is not at hand.
 */
export function syntheticVocab(): string[] {
  const vocab = ['[PAD]', ...Array.from({ length: 99 }, (_, i) => `[unused${i}]`), '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  const chars = [...'!"#$%&\'()*+,-./0123456789:;<=>?@[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~'];
  vocab.push(...chars, ...chars.filter((c) => /[a-z0-9]/.test(c)).map((c) => `##${c}`));
  const words =
    'the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there one all we can has its been if more will would who no out so said what up time about than into them only some could new other these may first then do any like my now over such our man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long here get both between life being under never day same another know while last us might great old year off come since against go came right used take three states himself few house use during without again place around however home small found thought went say part once general high upon school every does got united left number course war until always away something fact though water less public put think almost hand enough far took head yet government system better set told nothing night end why called eyes find going look asked later point knew city next program business give group toward young days let room president side social given present several order national possible rather second face per among form important often things looking early white case john become large big need four within felt along children saw best church ever least power development light thing hello world sentence vector encode first then right better word alpha beta gamma delta short one hey you whats up river stone cloud green swift quiet north ember maple good day nice weather cafe au lait this it'.split(
      ' ',
    );
  for (const w of words) if (!vocab.includes(w)) vocab.push(w);
  for (const s of ['##s', '##ed', '##ing', '##ly', '##er', '##est', '##is']) if (!vocab.includes(s)) vocab.push(s);
  return vocab;
}
