import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelError } from '@bertq/protocol';
import type { BertConfig, BertWeights, Tensor } from '../src/types.js';
import { resolveModelSource } from '../src/folder.js';
import { bertWeightsToCheckpointVariables, bertWeightsToHfTensors, loadModelWeights } from '../src/weights.js';
import { writeCheckpoint } from '../src/tensorbundle/writer.js';
import { writeSafetensors, writeShardedSafetensors } from '../src/safetensors.js';

const MODELS = fileURLToPath(new URL('../../../../../shared/models/', import.meta.url));

const CONFIG: BertConfig = {
  vocabSize: 12,
  hiddenSize: 4,
  numHiddenLayers: 2,
  numAttentionHeads: 2,
  intermediateSize: 8,
  hiddenAct: 'gelu',
  maxPositionEmbeddings: 8,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
  modelType: 'bert',
};
const GOOGLE_CONFIG = {
  vocab_size: 12,
  hidden_size: 4,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 8,
  hidden_act: 'gelu',
  max_position_embeddings: 8,
  type_vocab_size: 2,
};
const HF_CONFIG = { ...GOOGLE_CONFIG, model_type: 'bert', architectures: ['BertModel'], layer_norm_eps: 1e-12 };
const VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'a', 'cat', 'sat', 'on', 'mat', '##s'].join('\n');

function randomWeights(seed: number): BertWeights {
  let s = seed;
  const tensor = (shape: number[]): Tensor => ({
    shape,
    data: Float32Array.from(
      { length: shape.reduce((a, b) => a * b, 1) },
      () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5,
    ),
  });
  const h = CONFIG.hiddenSize;
  const lin = (i: number, o: number) => ({ kernel: tensor([i, o]), bias: tensor([o]) });
  const norm = () => ({ gamma: tensor([h]), beta: tensor([h]) });
  return {
    config: CONFIG,
    embeddings: { word: tensor([12, h]), position: tensor([8, h]), tokenType: tensor([2, h]), layerNorm: norm() },
    layers: [0, 1].map(() => ({
      query: lin(h, h),
      key: lin(h, h),
      value: lin(h, h),
      attentionOutput: lin(h, h),
      attentionLayerNorm: norm(),
      intermediate: lin(h, 8),
      output: lin(8, h),
      outputLayerNorm: norm(),
    })),
    pooler: lin(h, h),
  };
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-folder-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function checkpointFolder(dir: string, w: BertWeights, ckptName = 'bert_model.ckpt'): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'bert_config.json'), JSON.stringify(GOOGLE_CONFIG));
  await writeFile(join(dir, 'vocab.txt'), VOCAB);
  await writeCheckpoint(join(dir, ckptName), bertWeightsToCheckpointVariables(w));
}

async function hfFolder(dir: string, w: BertWeights, tokenizer: 'vocab' | 'json' = 'vocab'): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(HF_CONFIG));
  if (tokenizer === 'vocab') await writeFile(join(dir, 'vocab.txt'), VOCAB);
  else await writeFile(join(dir, 'tokenizer.json'), '{"model":{"type":"WordPiece"}}');
  await writeSafetensors(join(dir, 'model.safetensors'), bertWeightsToHfTensors(w));
}

const isModelErrorWith =
  (...parts: string[]) =>
  (e: unknown): boolean =>
    e instanceof ModelError && parts.every((p) => e.message.includes(p));

test('folder - a Google checkpoint folder resolves to its config, vocab and checkpoint, and loads', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(1);
  await checkpointFolder(dir, w);
  const src = await resolveModelSource({ modelDir: dir });
  assert.deepEqual(src, {
    kind: 'checkpoint',
    configPath: join(dir, 'bert_config.json'),
    vocabPath: join(dir, 'vocab.txt'),
    checkpointPrefix: join(dir, 'bert_model.ckpt'),
    dataFiles: [join(dir, 'bert_model.ckpt.data-00000-of-00001')],
  });
  assert.equal(src.kind, 'checkpoint');
  assert.deepEqual(await loadModelWeights(src), w);
  assert.deepEqual((await resolveModelSource({ model: dir })).kind, 'checkpoint');
});

test('folder - tunedModelDir and ckptName take the checkpoint from the fine-tuned folder, config and vocab from modelDir', async (t) => {
  const dir = await tempDir(t);
  const base = join(dir, 'uncased_L-2_H-4');
  const tuned = join(dir, 'mrpc_output');
  await checkpointFolder(base, randomWeights(2));
  const tunedWeights = randomWeights(3);
  await writeCheckpoint(join(tuned, 'model.ckpt-343'), bertWeightsToCheckpointVariables(tunedWeights));
  await writeFile(
    join(tuned, 'checkpoint'),
    'model_checkpoint_path: "model.ckpt-343"\nall_model_checkpoint_paths: "model.ckpt-343"\n',
  );

  const src = await resolveModelSource({ modelDir: base, tunedModelDir: tuned, ckptName: 'model.ckpt-343' });
  assert.equal(src.kind, 'checkpoint');
  assert.equal(src.kind === 'checkpoint' && src.checkpointPrefix, join(tuned, 'model.ckpt-343'));
  assert.equal(src.kind === 'checkpoint' && src.configPath, join(base, 'bert_config.json'));
  assert.deepEqual(await loadModelWeights(src as Exclude<typeof src, { kind: 'onnx' }>), tunedWeights);

  // Without ckptName the default bert_model.ckpt is looked for in the tuned folder, and the error
  // suggests the name its `checkpoint` file records.
  await assert.rejects(
    resolveModelSource({ modelDir: base, tunedModelDir: tuned }),
    isModelErrorWith(join(tuned, 'bert_model.ckpt.index'), 'model.ckpt-343', 'ckptName'),
  );
  await assert.rejects(
    resolveModelSource({ modelDir: base, tunedModelDir: join(dir, 'nowhere') }),
    isModelErrorWith(join(dir, 'nowhere')),
  );
  await assert.rejects(
    resolveModelSource({ modelDir: base, configName: 'my_config.json' }),
    isModelErrorWith(join(base, 'my_config.json'), 'does not exist'),
  );
});

test('folder - each missing file of a checkpoint folder is named', async (t) => {
  const dir = await tempDir(t);
  await checkpointFolder(dir, randomWeights(4));
  await unlink(join(dir, 'vocab.txt'));
  await assert.rejects(
    resolveModelSource({ modelDir: dir }),
    isModelErrorWith(join(dir, 'vocab.txt'), 'does not exist'),
  );
  await unlink(join(dir, 'bert_config.json'));
  await assert.rejects(
    resolveModelSource({ modelDir: dir }),
    isModelErrorWith(join(dir, 'bert_config.json'), 'does not exist'),
  );
  await unlink(join(dir, 'bert_model.ckpt.data-00000-of-00001'));
  await assert.rejects(
    resolveModelSource({ modelDir: dir }),
    isModelErrorWith(join(dir, 'bert_model.ckpt.data-00000-of-00001'), 'missing'),
  );
});

for (const real of ['google-bert-L4-H256-index', 'google-bert-L8-H512-index']) {
  test(`folder - TensorFlow's index-only ${real} folder is refused, naming its missing data shard`, async (t) => {
    const dir = join(MODELS, real);
    if (!existsSync(dir)) return t.skip(`${dir} is absent (shared model files not mounted)`);
    await assert.rejects(
      resolveModelSource({ modelDir: dir }),
      isModelErrorWith(join(dir, 'bert_model.ckpt.data-00000-of-00001'), 'missing'),
    );
  });
}

test('folder - a Hugging Face folder resolves with vocab.txt or tokenizer.json, and loads', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(5);
  await hfFolder(join(dir, 'a'), w);
  const a = await resolveModelSource({ model: join(dir, 'a') });
  assert.deepEqual(a, {
    kind: 'huggingface',
    folder: join(dir, 'a'),
    configPath: join(dir, 'a', 'config.json'),
    weightsPaths: [join(dir, 'a', 'model.safetensors')],
    vocabPath: join(dir, 'a', 'vocab.txt'),
  });
  assert.equal(a.kind, 'huggingface');
  assert.deepEqual(await loadModelWeights(a), w);

  await hfFolder(join(dir, 'b'), w, 'json');
  const b = await resolveModelSource({ modelDir: join(dir, 'b') });
  assert.equal(b.kind === 'huggingface' && b.tokenizerJsonPath, join(dir, 'b', 'tokenizer.json'));
  assert.equal(b.kind === 'huggingface' && b.vocabPath, undefined);
});

test('folder - a sharded Hugging Face folder lists every shard, and a missing shard is named', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(6);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(HF_CONFIG));
  await writeFile(join(dir, 'vocab.txt'), VOCAB);
  const { indexPath, shardPaths } = await writeShardedSafetensors(dir, bertWeightsToHfTensors(w), 300);
  const src = await resolveModelSource({ model: dir });
  assert.equal(src.kind, 'huggingface');
  if (src.kind !== 'huggingface') return;
  assert.equal(src.weightsIndexPath, indexPath);
  assert.deepEqual(src.weightsPaths, shardPaths);
  assert.deepEqual(await loadModelWeights(src), w);
  await unlink(shardPaths[1]!);
  await assert.rejects(resolveModelSource({ model: dir }), isModelErrorWith(shardPaths[1]!, indexPath));
});

test('folder - sentence-transformers modules give pooling and normalize hints', async (t) => {
  const dir = await tempDir(t);
  await hfFolder(dir, randomWeights(7));
  await writeFile(
    join(dir, 'modules.json'),
    JSON.stringify([
      { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
      { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
      { idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' },
    ]),
  );
  await mkdir(join(dir, '1_Pooling'));
  const pooling = {
    word_embedding_dimension: 4,
    pooling_mode_cls_token: false,
    pooling_mode_mean_tokens: true,
    pooling_mode_max_tokens: false,
    pooling_mode_mean_sqrt_len_tokens: false,
  };
  await writeFile(join(dir, '1_Pooling', 'config.json'), JSON.stringify(pooling));
  const src = await resolveModelSource({ model: dir });
  assert.equal(src.kind, 'huggingface');
  assert.deepEqual(src.kind === 'huggingface' && src.sentenceTransformers, {
    pooling: 'mean',
    poolingModes: ['mean'],
    normalize: true,
    dense: false,
    modulesPath: join(dir, 'modules.json'),
    poolingConfigPath: join(dir, '1_Pooling', 'config.json'),
  });

  await writeFile(
    join(dir, '1_Pooling', 'config.json'),
    JSON.stringify({ ...pooling, pooling_mode_mean_tokens: false, pooling_mode_cls_token: true }),
  );
  const cls = await resolveModelSource({ model: dir });
  assert.equal(cls.kind === 'huggingface' && cls.sentenceTransformers?.pooling, 'cls');

  await writeFile(join(dir, '1_Pooling', 'config.json'), JSON.stringify({ ...pooling, pooling_mode_max_tokens: true }));
  const mixed = await resolveModelSource({ model: dir });
  assert.equal(mixed.kind === 'huggingface' && mixed.sentenceTransformers?.pooling, 'other');

  await writeFile(join(dir, '1_Pooling', 'config.json'), '{not json');
  await assert.rejects(
    resolveModelSource({ model: dir }),
    isModelErrorWith(join(dir, '1_Pooling', 'config.json'), 'not valid JSON'),
  );
  await rm(join(dir, '1_Pooling'), { recursive: true });
  await assert.rejects(
    resolveModelSource({ model: dir }),
    isModelErrorWith(join(dir, '1_Pooling', 'config.json'), 'modules.json'),
  );
});

test('folder - an old sentence-transformers layout finds weights in 0_Transformer', async (t) => {
  const dir = await tempDir(t);
  const w = randomWeights(8);
  await hfFolder(join(dir, '0_Transformer'), w);
  await writeFile(
    join(dir, 'modules.json'),
    JSON.stringify([
      { idx: 0, name: '0', path: '0_Transformer', type: 'sentence_transformers.models.Transformer' },
      { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
    ]),
  );
  await mkdir(join(dir, '1_Pooling'));
  await writeFile(join(dir, '1_Pooling', 'config.json'), JSON.stringify({ pooling_mode_max_tokens: true }));
  const src = await resolveModelSource({ model: dir });
  assert.equal(src.kind, 'huggingface');
  if (src.kind !== 'huggingface') return;
  assert.equal(src.folder, join(dir, '0_Transformer'));
  assert.deepEqual(src.weightsPaths, [join(dir, '0_Transformer', 'model.safetensors')]);
  assert.equal(src.sentenceTransformers?.pooling, 'max');
  assert.equal(src.sentenceTransformers?.normalize, false);
  assert.deepEqual(await loadModelWeights(src), w);
});

test('folder - an .onnx file or a folder with onnx/model.onnx resolves with the tokenizer beside it', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'onnx'));
  await writeFile(join(dir, 'onnx', 'model.onnx'), 'not parsed here');
  await writeFile(join(dir, 'tokenizer.json'), '{}');
  await writeFile(join(dir, 'config.json'), JSON.stringify(HF_CONFIG));
  const expected = {
    kind: 'onnx',
    onnxPath: join(dir, 'onnx', 'model.onnx'),
    tokenizerJsonPath: join(dir, 'tokenizer.json'),
    configPath: join(dir, 'config.json'),
  };
  assert.deepEqual(await resolveModelSource({ model: dir }), expected);
  assert.deepEqual(await resolveModelSource({ model: join(dir, 'onnx', 'model.onnx') }), expected);
  await writeFile(join(dir, 'weights.bin'), '');
  await assert.rejects(
    resolveModelSource({ model: join(dir, 'weights.bin') }),
    isModelErrorWith(join(dir, 'weights.bin'), '.onnx'),
  );
});

test('folder - PyTorch-only weights are refused with a pointer to safetensors', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'config.json'), JSON.stringify(HF_CONFIG));
  await writeFile(join(dir, 'vocab.txt'), VOCAB);
  await writeFile(join(dir, 'pytorch_model.bin'), 'pickle');
  await assert.rejects(
    resolveModelSource({ model: dir }),
    isModelErrorWith(join(dir, 'pytorch_model.bin'), 'safetensors', 'convert', join(dir, 'model.safetensors')),
  );
});

test('folder - an empty or absent folder and a Hugging Face folder without config or tokenizer are named', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(
    resolveModelSource({ model: dir }),
    isModelErrorWith(
      `model folder ${dir}`,
      'bert_model.ckpt.index (checkpoint)',
      'model.safetensors (Hugging Face)',
      'model.onnx',
    ),
  );
  await assert.rejects(
    resolveModelSource({ modelDir: join(dir, 'absent') }),
    isModelErrorWith(join(dir, 'absent'), 'does not exist'),
  );
  await assert.rejects(resolveModelSource({}), isModelErrorWith('no model given'));
  await assert.rejects(resolveModelSource({ model: dir, modelDir: dir }), isModelErrorWith('not both'));

  const hf = join(dir, 'hf');
  await hfFolder(hf, randomWeights(9));
  await unlink(join(hf, 'vocab.txt'));
  await assert.rejects(resolveModelSource({ model: hf }), isModelErrorWith(hf, 'vocab.txt', 'tokenizer.json'));
  await unlink(join(hf, 'config.json'));
  await assert.rejects(resolveModelSource({ model: hf }), isModelErrorWith(join(hf, 'config.json'), 'does not exist'));
});

test('folder - the real all-MiniLM-L6-v2 tokenizer folder is named as a Hugging Face model without weights', async (t) => {
  const dir = join(MODELS, 'all-MiniLM-L6-v2-tokenizer');
  if (!existsSync(dir)) return t.skip(`${dir} is absent (shared model files not mounted)`);
  await assert.rejects(
    resolveModelSource({ model: dir }),
    isModelErrorWith(`model folder ${dir}`, 'model.safetensors', join(dir, 'config.json'), 'without its weights'),
  );
});
