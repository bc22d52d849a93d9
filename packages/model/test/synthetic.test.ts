import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError } from '@bertq/protocol';
import { bertBaseConfig, syntheticBertWeights, tinyBertConfig } from '../src/synthetic.js';
import type { BertConfig, BertWeights, Tensor } from '../src/types.js';

/** Generous budget for ~110M parameters on a shared 2-core machine (about 1 s when idle). */

/** Every tensor of a model with a stable name, in a fixed order. */
function namedTensors(w: BertWeights): [string, Tensor][] {
  const out: [string, Tensor][] = [
    ['word', w.embeddings.word],
    ['position', w.embeddings.position],
    ['tokenType', w.embeddings.tokenType],
    ['embLn.gamma', w.embeddings.layerNorm.gamma],
    ['embLn.beta', w.embeddings.layerNorm.beta],
  ];
  w.layers.forEach((layer, l) => {
    for (const key of ['query', 'key', 'value', 'attentionOutput', 'intermediate', 'output'] as const) {
      out.push([`${l}.${key}.kernel`, layer[key].kernel], [`${l}.${key}.bias`, layer[key].bias]);
    }
    for (const key of ['attentionLayerNorm', 'outputLayerNorm'] as const) {
      out.push([`${l}.${key}.gamma`, layer[key].gamma], [`${l}.${key}.beta`, layer[key].beta]);
    }
  });
  if (w.pooler) out.push(['pooler.kernel', w.pooler.kernel], ['pooler.bias', w.pooler.bias]);
  return out;
}

function bytes(t: Tensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function stats(data: Float32Array): { mean: number; std: number; min: number; max: number } {
  let sum = 0;
  let sq = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of data) {
    sum += v;
    sq += v * v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const mean = sum / data.length;
  return { mean, std: Math.sqrt(sq / data.length - mean * mean), min, max };
}

test('synthetic - the same config and seed give bit-identical weights', () => {
  const a = namedTensors(syntheticBertWeights(tinyBertConfig(), 7));
  const b = namedTensors(syntheticBertWeights(tinyBertConfig(), 7));
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.deepEqual(a[i]![1].shape, b[i]![1].shape);
    assert.ok(bytes(a[i]![1]).equals(bytes(b[i]![1])), `${a[i]![0]} differs between two generations`);
  }
});

test('synthetic - different seeds give different values in every tensor', () => {
  const a = namedTensors(syntheticBertWeights(tinyBertConfig(), 1));
  const b = namedTensors(syntheticBertWeights(tinyBertConfig(), 2));
  for (let i = 0; i < a.length; i++) {
    assert.ok(!bytes(a[i]![1]).equals(bytes(b[i]![1])), `${a[i]![0]} is the same for seeds 1 and 2`);
  }
});

test('synthetic - no two tensors of one model share their random values', () => {
  // Same-shaped tensors (query/key/value kernels, gammas) must come from different streams.
  const tensors = namedTensors(syntheticBertWeights(tinyBertConfig(), 3));
  const seen = new Map<string, string>();
  for (const [name, t] of tensors) {
    const key = bytes(t).subarray(0, 64).toString('hex');
    assert.equal(seen.get(key), undefined, `${name} starts like ${seen.get(key)}`);
    seen.set(key, name);
  }
});

test('synthetic - every tensor has the shape its config asks for, pooler included', () => {
  const config: BertConfig = tinyBertConfig({
    vocabSize: 101,
    hiddenSize: 12,
    numHiddenLayers: 3,
    numAttentionHeads: 3,
    intermediateSize: 20,
    maxPositionEmbeddings: 17,
    typeVocabSize: 3,
  });
  const w = syntheticBertWeights(config, 0);
  assert.deepEqual(w.config, config);
  assert.deepEqual(w.embeddings.word.shape, [101, 12]);
  assert.deepEqual(w.embeddings.position.shape, [17, 12]);
  assert.deepEqual(w.embeddings.tokenType.shape, [3, 12]);
  assert.equal(w.layers.length, 3);
  for (const layer of w.layers) {
    for (const key of ['query', 'key', 'value', 'attentionOutput'] as const) {
      assert.deepEqual(layer[key].kernel.shape, [12, 12]);
      assert.deepEqual(layer[key].bias.shape, [12]);
    }
    assert.deepEqual(layer.intermediate.kernel.shape, [12, 20]);
    assert.deepEqual(layer.intermediate.bias.shape, [20]);
    assert.deepEqual(layer.output.kernel.shape, [20, 12]);
    assert.deepEqual(layer.output.bias.shape, [12]);
    assert.deepEqual(layer.attentionLayerNorm.gamma.shape, [12]);
    assert.deepEqual(layer.outputLayerNorm.beta.shape, [12]);
  }
  assert.ok(w.pooler, 'pooler present');
  assert.deepEqual(w.pooler.kernel.shape, [12, 12]);
  for (const [name, t] of namedTensors(w)) {
    assert.equal(
      t.data.length,
      t.shape.reduce((a, b) => a * b, 1),
      `${name} data length matches its shape`,
    );
    assert.ok(t.data.every(Number.isFinite), `${name} is finite`);
  }
});

test('synthetic - a layer does not depend on how many layers or how large a vocabulary the model has', () => {
  const small = syntheticBertWeights(tinyBertConfig({ numHiddenLayers: 2, vocabSize: 500 }), 11);
  const large = syntheticBertWeights(tinyBertConfig({ numHiddenLayers: 4 }), 11);
  assert.ok(bytes(small.layers[1]!.query.kernel).equals(bytes(large.layers[1]!.query.kernel)));
  assert.ok(bytes(small.embeddings.position).equals(bytes(large.embeddings.position)));
  // One stream per table, filled row by row: a smaller vocabulary gets a prefix of the larger table.
  assert.ok(
    bytes(small.embeddings.word).equals(
      bytes(large.embeddings.word).subarray(0, small.embeddings.word.data.byteLength),
    ),
  );
});

test('synthetic - values follow the documented spread: kernels ~1/sqrt(fan_in), gammas near 1, small non-zero biases', () => {
  const config = tinyBertConfig({ hiddenSize: 64, intermediateSize: 256, numHiddenLayers: 1, numAttentionHeads: 4 });
  const w = syntheticBertWeights(config, 5);
  const layer = w.layers[0]!;
  const q = stats(layer.query.kernel.data);
  assert.ok(Math.abs(q.mean) < 0.01, `query kernel mean ${q.mean}`);
  assert.ok(Math.abs(q.std - 1 / 8) < 0.01, `query kernel std ${q.std}, expected ~${1 / 8}`);
  const out = stats(layer.output.kernel.data);
  assert.ok(Math.abs(out.std - 1 / 16) < 0.005, `output kernel std ${out.std}, expected ~${1 / 16} (fan_in 256)`);
  // Bounded like a truncated normal: nothing beyond ~3.5 sigma.
  assert.ok(q.max <= 3.47 / 8 && q.min >= -3.47 / 8, `query kernel range [${q.min}, ${q.max}]`);
  const word = stats(w.embeddings.word.data);
  assert.ok(Math.abs(word.std - 0.02) < 0.001, `word embedding std ${word.std}`);
  const gamma = stats(layer.attentionLayerNorm.gamma.data);
  assert.ok(
    Math.abs(gamma.mean - 1) < 0.03 && gamma.std > 0.02 && gamma.std < 0.1,
    `gamma mean ${gamma.mean} std ${gamma.std}`,
  );
  const bias = stats(layer.query.bias.data);
  assert.ok(bias.std > 0.005 && bias.std < 0.05, `bias std ${bias.std}`);
  assert.ok(
    layer.query.bias.data.every((v) => v !== 0),
    'biases are non-zero',
  );
});

test('synthetic - scale multiplies the spread of kernels and embeddings', () => {
  const base = syntheticBertWeights(tinyBertConfig({ numHiddenLayers: 1, vocabSize: 1000 }), 9);
  const scaled = syntheticBertWeights(tinyBertConfig({ numHiddenLayers: 1, vocabSize: 1000 }), 9, { scale: 0.5 });
  const k0 = base.layers[0]!.key.kernel.data;
  const k1 = scaled.layers[0]!.key.kernel.data;
  for (let i = 0; i < k0.length; i++) assert.ok(Math.abs(k1[i]! - k0[i]! / 2) <= 1e-7 * Math.abs(k0[i]!) + 1e-12);
  const r = stats(scaled.embeddings.word.data).std / stats(base.embeddings.word.data).std;
  assert.ok(Math.abs(r - 0.5) < 1e-5, `embedding std ratio ${r}`);
});

test('synthetic - rejects a bad seed, scale or config with a clear error', () => {
  assert.throws(
    () => syntheticBertWeights(tinyBertConfig(), -1),
    (e) => e instanceof BadRequestError && /seed/.test(e.message),
  );
  assert.throws(() => syntheticBertWeights(tinyBertConfig(), 1.5), BadRequestError);
  assert.throws(() => syntheticBertWeights(tinyBertConfig(), 1, { scale: 0 }), /scale/);
  assert.throws(() => syntheticBertWeights(tinyBertConfig({ hiddenSize: 0 }), 1), /config.hiddenSize/);
});

test('synthetic - the config helpers describe a tiny model and bert-base', () => {
  const tiny = tinyBertConfig({ numHiddenLayers: 2 });
  assert.equal(tiny.numHiddenLayers, 2);
  assert.equal(tiny.vocabSize, 30522);
  assert.equal(tiny.hiddenSize % tiny.numAttentionHeads, 0);
  const base = bertBaseConfig();
  assert.deepEqual(
    [
      base.numHiddenLayers,
      base.hiddenSize,
      base.numAttentionHeads,
      base.intermediateSize,
      base.maxPositionEmbeddings,
      base.vocabSize,
    ],
    [12, 768, 12, 3072, 512, 30522],
  );
});

test('synthetic - generates a bert-base-shaped model (~110M parameters)', () => {
  const w = syntheticBertWeights(bertBaseConfig(), 42);
  const params = namedTensors(w).reduce((n, [, t]) => n + t.data.length, 0);
  assert.ok(params > 109_000_000 && params < 111_000_000, `${params} parameters`);
  const s = stats(w.layers[11]!.intermediate.kernel.data);
  assert.ok(Math.abs(s.std - 1 / Math.sqrt(768)) < 0.001, `layer 11 intermediate kernel std ${s.std}`);
});
