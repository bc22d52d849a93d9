import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelError } from '@bertq/protocol';
import type { BertConfig, BertWeights, LayerNormWeights, LinearWeights, Tensor } from '../src/types.js';
import {
  bertWeightsToCheckpointVariables,
  bertWeightsToHfTensors,
  loadCheckpointWeights,
  loadSafetensorsWeights,
  transpose2d,
} from '../src/weights.js';
import { writeCheckpoint } from '../src/tensorbundle/writer.js';
import { openCheckpoint } from '../src/tensorbundle/reader.js';
import { writeSafetensors, writeShardedSafetensors } from '../src/safetensors.js';
import { float32ToFloat16Bytes } from '../src/tensorbundle/dtypes.js';

const CONFIG: BertConfig = {
  vocabSize: 30,
  hiddenSize: 8,
  numHiddenLayers: 3,
  numAttentionHeads: 2,
  intermediateSize: 12,
  hiddenAct: 'gelu',
  maxPositionEmbeddings: 16,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
  modelType: 'bert',
};

/** Deterministic pseudo-random weights (xorshift), distinct per tensor so a mix-up cannot pass. */
function randomWeights(config: BertConfig, seed: number, withPooler = true): BertWeights {
  let s = seed >>> 0 || 1;
  const tensor = (shape: number[]): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      data[i] = (s >>> 0) / 0xffffffff - 0.5;
    }
    return { shape, data };
  };
  const h = config.hiddenSize;
  const linear = (i: number, o: number): LinearWeights => ({ kernel: tensor([i, o]), bias: tensor([o]) });
  const norm = (): LayerNormWeights => ({ gamma: tensor([h]), beta: tensor([h]) });
  const w: BertWeights = {
    config,
    embeddings: {
      word: tensor([config.vocabSize, h]),
      position: tensor([config.maxPositionEmbeddings, h]),
      tokenType: tensor([config.typeVocabSize, h]),
      layerNorm: norm(),
    },
    layers: Array.from({ length: config.numHiddenLayers }, () => ({
      query: linear(h, h),
      key: linear(h, h),
      value: linear(h, h),
      attentionOutput: linear(h, h),
      attentionLayerNorm: norm(),
      intermediate: linear(h, config.intermediateSize),
      output: linear(config.intermediateSize, h),
      outputLayerNorm: norm(),
    })),
  };
  if (withPooler) w.pooler = linear(h, h);
  return w;
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-weights-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const isModelErrorWith =
  (...parts: string[]) =>
  (e: unknown): boolean =>
    e instanceof ModelError && parts.every((p) => e.message.includes(p));

test('weights - transpose2d swaps rows and columns of a matrix that is not a tile multiple', () => {
  const rows = 37;
  const cols = 70;
  const m = Float32Array.from({ length: rows * cols }, (_, i) => i);
  const t = transpose2d(m, rows, cols);
  for (const [r, c] of [
    [0, 0],
    [36, 69],
    [5, 33],
    [32, 64],
    [17, 2],
  ] as const)
    assert.equal(t[c * rows + r], m[r * cols + c]);
  assert.deepEqual(transpose2d(t, cols, rows), m);
});

test('weights - a checkpoint written from BertWeights loads back identical', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(CONFIG, 7);
  const vars = bertWeightsToCheckpointVariables(w);
  assert.equal(vars.size, 5 + 16 * 3 + 2);
  assert.ok(vars.has('bert/encoder/layer_2/attention/output/LayerNorm/gamma'));
  const { prefix } = await writeCheckpoint(join(dir, 'bert_model.ckpt'), vars);
  assert.deepEqual(await loadCheckpointWeights(prefix, CONFIG), w);
});

test('weights - safetensors written the sentence-transformers way load back identical, Linear weights transposed', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(CONFIG, 8);
  const hf = bertWeightsToHfTensors(w);
  assert.ok(hf.has('encoder.layer.0.attention.output.LayerNorm.weight'));
  assert.ok(hf.has('embeddings.word_embeddings.weight'));
  assert.ok(![...hf.keys()].some((k) => k.startsWith('bert.')));
  // nn.Linear stores [out, in]: intermediate (8 → 12) is [12, 8] in HF layout.
  const inter = hf.get('encoder.layer.1.intermediate.dense.weight')!;
  assert.deepEqual(inter.shape, [12, 8]);
  const kernel = w.layers[1]!.intermediate.kernel; // [in=8, out=12]
  assert.equal(inter.data[5 * 8 + 3], kernel.data[3 * 12 + 5]);
  // Embeddings are not transposed.
  assert.equal(hf.get('embeddings.word_embeddings.weight')!.data, w.embeddings.word.data);

  const path = join(dir, 'model.safetensors');
  await writeSafetensors(path, hf);
  assert.deepEqual(await loadSafetensorsWeights(path, CONFIG), w);

  const sharded = await writeShardedSafetensors(join(dir, 'sharded'), hf, 2000);
  assert.ok(sharded.shardPaths.length > 1);
  assert.deepEqual(await loadSafetensorsWeights(sharded.indexPath, CONFIG), w);
});

test('weights - bert.-prefixed names, gamma/beta LayerNorms and task heads load; heads are ignored', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(CONFIG, 9);
  const renamed = new Map<string, Tensor>();
  for (const [name, tensor] of bertWeightsToHfTensors(w)) {
    const old = name.replace(/LayerNorm\.weight$/, 'LayerNorm.gamma').replace(/LayerNorm\.bias$/, 'LayerNorm.beta');
    renamed.set(`bert.${old}`, tensor);
  }
  renamed.set('cls.predictions.bias', { shape: [30], data: new Float32Array(30) });
  renamed.set('classifier.weight', { shape: [2, 8], data: new Float32Array(16) });
  const path = join(dir, 'model.safetensors');
  await writeSafetensors(path, renamed);
  assert.deepEqual(await loadSafetensorsWeights([path], CONFIG), w);
});

test('weights - float16 safetensors load as float32 within half precision', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(CONFIG, 10);
  const half = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
  for (const [name, tensor] of bertWeightsToHfTensors(w))
    half.set(name, { dtype: 'F16', shape: tensor.shape, bytes: float32ToFloat16Bytes(tensor.data) });
  const path = join(dir, 'model.safetensors');
  await writeSafetensors(path, half);
  const loaded = await loadSafetensorsWeights(path, CONFIG);
  const a = w.layers[2]!.output.kernel.data;
  const b = loaded.layers[2]!.output.kernel.data;
  assert.equal(b.length, a.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 2 ** -11 * 0.5 + 1e-7, `element ${i}`);
});

test('weights - only the first numLayers layers are read; optimizer slots and global_step are ignored', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(CONFIG, 11);
  const vars = new Map<string, Tensor | { dtype: 'int64'; shape: number[]; bytes: Uint8Array }>(
    bertWeightsToCheckpointVariables(w),
  );
  for (const [name, tensor] of bertWeightsToCheckpointVariables(w)) {
    vars.set(`${name}/adam_m`, tensor);
    vars.set(`${name}/adam_v`, tensor);
  }
  vars.set('global_step', { dtype: 'int64', shape: [], bytes: new Uint8Array(8) });
  const { prefix, dataPath } = await writeCheckpoint(join(dir, 'model.ckpt-343'), vars);

  // Corrupt every byte of layer 2: loading it would fail its CRC check, so success proves it is not read.
  const ckpt = await openCheckpoint(prefix);
  const data = await readFile(dataPath);
  for (const e of ckpt.entries.values())
    if (e.name.startsWith('bert/encoder/layer_2/')) data.fill(0xee, e.offset, e.offset + e.size);
  await writeFile(dataPath, data);

  const two = await loadCheckpointWeights(prefix, CONFIG, { numLayers: 2 });
  assert.equal(two.layers.length, 2);
  assert.equal(two.config.numHiddenLayers, 3, 'config keeps the model depth');
  assert.deepEqual(two.layers, w.layers.slice(0, 2));
  assert.deepEqual(two.embeddings, w.embeddings);
  await assert.rejects(
    loadCheckpointWeights(prefix, CONFIG),
    isModelErrorWith('bert/encoder/layer_2/', dataPath, 'CRC'),
  );
  await assert.rejects(
    loadCheckpointWeights(prefix, CONFIG, { numLayers: 4 }),
    isModelErrorWith('4 encoder layers', 'has 3'),
  );
});

test('weights - the pooler is optional: absent in the file, or not asked for', async (t) => {
  const dir = await tempDir(t);
  const noPooler = randomWeights(CONFIG, 12, false);
  const path = join(dir, 'model.safetensors');
  await writeSafetensors(path, bertWeightsToHfTensors(noPooler));
  const loaded = await loadSafetensorsWeights(path, CONFIG);
  assert.equal(loaded.pooler, undefined);
  assert.deepEqual(loaded, noPooler);

  const withPooler = randomWeights(CONFIG, 13);
  const { prefix } = await writeCheckpoint(join(dir, 'bert_model.ckpt'), bertWeightsToCheckpointVariables(withPooler));
  assert.equal((await loadCheckpointWeights(prefix, CONFIG, { includePooler: false })).pooler, undefined);
  assert.deepEqual((await loadCheckpointWeights(prefix, CONFIG)).pooler, withPooler.pooler);

  // Half a pooler is a broken file, not an absent pooler.
  const vars = bertWeightsToCheckpointVariables(withPooler);
  vars.delete('bert/pooler/dense/bias');
  const half = await writeCheckpoint(join(dir, 'half.ckpt'), vars);
  await assert.rejects(
    loadCheckpointWeights(half.prefix, CONFIG),
    isModelErrorWith('bert/pooler/dense/bias', half.indexPath),
  );
});

test('weights - a missing variable is named with its file', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(CONFIG, 14);
  const vars = bertWeightsToCheckpointVariables(w);
  vars.delete('bert/encoder/layer_1/attention/self/value/kernel');
  const { prefix, indexPath } = await writeCheckpoint(join(dir, 'bert_model.ckpt'), vars);
  await assert.rejects(
    loadCheckpointWeights(prefix, CONFIG),
    isModelErrorWith('bert/encoder/layer_1/attention/self/value/kernel', indexPath),
  );

  const hf = bertWeightsToHfTensors(w);
  hf.delete('encoder.layer.2.output.LayerNorm.bias');
  const path = join(dir, 'model.safetensors');
  await writeSafetensors(path, hf);
  await assert.rejects(
    loadSafetensorsWeights(path, CONFIG),
    isModelErrorWith('encoder.layer.2.output.LayerNorm.bias', path),
  );

  const roberta = new Map([...bertWeightsToHfTensors(w)].map(([k, v]) => [`roberta.${k}`, v]));
  await writeSafetensors(path, roberta);
  await assert.rejects(loadSafetensorsWeights(path, CONFIG), isModelErrorWith(path, 'roberta.', 'not a BERT model'));
});

test('weights - a shape that contradicts the config names variable, file and both shapes', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(CONFIG, 15);
  const { prefix, dataPath } = await writeCheckpoint(join(dir, 'bert_model.ckpt'), bertWeightsToCheckpointVariables(w));
  const wider: BertConfig = { ...CONFIG, intermediateSize: 16 };
  await assert.rejects(
    loadCheckpointWeights(prefix, wider),
    isModelErrorWith('bert/encoder/layer_0/intermediate/dense/kernel', dataPath, '[8, 12]', '[8, 16]'),
  );
  const path = join(dir, 'model.safetensors');
  await writeSafetensors(path, bertWeightsToHfTensors(w));
  await assert.rejects(
    loadSafetensorsWeights(path, { ...CONFIG, vocabSize: 31 }),
    isModelErrorWith('embeddings.word_embeddings.weight', path, '[30, 8]', '[31, 8]'),
  );
});
