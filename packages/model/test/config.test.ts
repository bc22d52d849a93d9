import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelError } from '@bertq/protocol';
import { parseBertConfig, readBertConfig } from '../src/config.js';

const MODELS = fileURLToPath(new URL('../../../../../shared/models/', import.meta.url));

const BASE = {
  vocab_size: 100,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 32,
  hidden_act: 'gelu',
  max_position_embeddings: 64,
  type_vocab_size: 2,
};

const isModelErrorWith =
  (...parts: string[]) =>
  (e: unknown): boolean =>
    e instanceof ModelError && parts.every((p) => e.message.includes(p));

test("config - reads Google's bert_config.json of uncased_L-4_H-256_A-4", async (t) => {
  const path = join(MODELS, 'google-bert-L4-H256-index', 'bert_config.json');
  if (!existsSync(path)) return t.skip(`${path} is absent (shared model files not mounted)`);
  assert.deepEqual(await readBertConfig(path), {
    vocabSize: 30522,
    hiddenSize: 256,
    numHiddenLayers: 4,
    numAttentionHeads: 4,
    intermediateSize: 1024,
    hiddenAct: 'gelu',
    maxPositionEmbeddings: 512,
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    modelType: 'bert',
  });
});

test("config - reads Hugging Face's config.json of all-MiniLM-L6-v2", async (t) => {
  const path = join(MODELS, 'all-MiniLM-L6-v2-tokenizer', 'config.json');
  if (!existsSync(path)) return t.skip(`${path} is absent (shared model files not mounted)`);
  const c = await readBertConfig(path);
  assert.equal(c.hiddenSize, 384);
  assert.equal(c.numHiddenLayers, 6);
  assert.equal(c.numAttentionHeads, 12);
  assert.equal(c.intermediateSize, 1536);
  assert.equal(c.vocabSize, 30522);
  assert.equal(c.modelType, 'bert');
  assert.equal(c.hiddenAct, 'gelu');
});

test('config - maps hidden_act names to the activation bertq computes', () => {
  const cases: Array<[string, string]> = [
    ['gelu', 'gelu'],
    ['gelu_new', 'gelu_new'],
    ['gelu_pytorch_tanh', 'gelu_new'],
    ['gelu_fast', 'gelu_new'],
    ['relu', 'relu'],
  ];
  for (const [act, expected] of cases)
    assert.equal(parseBertConfig({ ...BASE, hidden_act: act }, 'c.json').hiddenAct, expected, act);
  assert.throws(
    () => parseBertConfig({ ...BASE, hidden_act: 'swish' }, '/m/config.json'),
    isModelErrorWith('/m/config.json', 'hidden_act', 'swish', 'gelu_new'),
  );
});

test('config - fills Hugging Face defaults and reads layer_norm_eps', () => {
  const c = parseBertConfig(
    {
      ...BASE,
      hidden_act: undefined,
      max_position_embeddings: undefined,
      type_vocab_size: undefined,
      layer_norm_eps: 1e-5,
    },
    'c.json',
  );
  assert.equal(c.hiddenAct, 'gelu');
  assert.equal(c.maxPositionEmbeddings, 512);
  assert.equal(c.typeVocabSize, 2);
  assert.equal(c.layerNormEps, 1e-5);
});

test('config - rejects models that are not BERT, naming the file and field', () => {
  assert.throws(
    () => parseBertConfig({ ...BASE, model_type: 'roberta' }, '/m/config.json'),
    isModelErrorWith('/m/config.json', 'model_type', 'roberta'),
  );
  assert.throws(
    () => parseBertConfig({ ...BASE, model_type: 'distilbert' }, '/m/config.json'),
    isModelErrorWith('/m/config.json', 'distilbert'),
  );
  assert.throws(
    () => parseBertConfig({ ...BASE, architectures: ['XLMRobertaModel'] }, '/m/config.json'),
    isModelErrorWith('/m/config.json', 'architectures', 'XLMRobertaModel'),
  );
  assert.throws(
    () => parseBertConfig({ ...BASE, position_embedding_type: 'relative_key' }, '/m/config.json'),
    isModelErrorWith('/m/config.json', 'position_embedding_type'),
  );
  assert.equal(parseBertConfig({ ...BASE, architectures: ['BertForMaskedLM'] }, 'c.json').modelType, 'bert');
});

test('config - rejects invalid numbers, naming the file and field', () => {
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ ...BASE, hidden_size: '16' }, 'hidden_size'],
    [{ ...BASE, num_hidden_layers: 0 }, 'num_hidden_layers'],
    [{ ...BASE, vocab_size: 10.5 }, 'vocab_size'],
    [{ ...BASE, intermediate_size: undefined }, 'intermediate_size'],
    [{ ...BASE, num_attention_heads: 5 }, 'not a multiple of num_attention_heads'],
    [{ ...BASE, layer_norm_eps: -1 }, 'layer_norm_eps'],
    [{ ...BASE, max_position_embeddings: -512 }, 'max_position_embeddings'],
  ];
  for (const [json, field] of bad) {
    assert.throws(
      () => parseBertConfig(json, '/m/bert_config.json'),
      isModelErrorWith('/m/bert_config.json', field),
      field,
    );
  }
  assert.throws(
    () => parseBertConfig([1, 2], '/m/bert_config.json'),
    isModelErrorWith('/m/bert_config.json', 'not a JSON object'),
  );
});

test('config - a missing or malformed file is named', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const missing = join(dir, 'bert_config.json');
  await assert.rejects(readBertConfig(missing), isModelErrorWith(missing, 'does not exist'));
  const broken = join(dir, 'config.json');
  await writeFile(broken, '{"hidden_size": 16,');
  await assert.rejects(readBertConfig(broken), isModelErrorWith(broken, 'not valid JSON'));
});
