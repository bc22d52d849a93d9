import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BadRequestError, ModelError, TooLongError } from '@bertq/protocol';
import { Encoder } from '../src/encoder.js';
import type { EncoderOptions } from '../src/encoder.js';
import { referenceEncode } from '../src/reference.js';
import { POOLING_STRATEGIES } from '../src/types.js';
import { SHARED_MODELS, hasShared, maxAbsDiff, tinyModel } from './fixtures.js';
import type { TinyModel } from './fixtures.js';

const FP32_TOLERANCE = 1e-4;
const FP16_TOLERANCE = 1e-2;
const SAME_WEIGHTS_TOLERANCE = 1e-6;
const BATCH_INVARIANCE_TOLERANCE = 1e-5;

const SENTENCES = [
  'First do it',
  'then do it right',
  'then do it better',
  'Hello world!',
  'The quick brown fox jumps over the lazy dog near the river bank today',
  'Café au lait ||| a coffee with milk',
  '你好，世界',
  'a',
];

let tiny: TinyModel;
before(async () => {
  tiny = await tinyModel();
});
after(async () => {
  await tiny.cleanup();
});

async function withEncoder<T>(opts: Partial<EncoderOptions>, fn: (enc: Encoder) => Promise<T>): Promise<T> {
  const enc = await Encoder.load({ model: tiny.huggingFaceDir, graphTmpDir: tiny.cacheDir, threads: 1, ...opts });
  try {
    return await fn(enc);
  } finally {
    await enc.close();
  }
}

/** The oracle: the same tokenization, through the TypeScript reference forward pass. */
async function expected(enc: Encoder, texts: string[], opts: { normalize?: boolean } = {}) {
  const rows = await enc.tokenize(texts);
  const batch = enc.tokenizer.collate(rows);
  return referenceEncode(tiny.weights, batch, {
    poolingStrategy: enc.config.poolingStrategy,
    poolingLayer: enc.config.poolingLayer,
    normalize: opts.normalize ?? false,
  });
}

const LAYER_CHOICES = [[-1], [-2], [-4], [-1, -4, 1]];

for (const poolingStrategy of POOLING_STRATEGIES) {
  test(`encoder - ${poolingStrategy} matches the reference forward pass for layers -1, -2, first and a list`, async () => {
    for (const poolingLayer of LAYER_CHOICES) {
      // maxSeqLen null: NONE output is then as long as the longest sentence, like the reference batch
      await withEncoder({ poolingStrategy, poolingLayer, maxSeqLen: null }, async (enc) => {
        const got = await enc.encode(SENTENCES);
        const want = await expected(enc, SENTENCES);
        assert.deepEqual(got.shape, want.shape, `shape for ${poolingLayer}`);
        const diff = maxAbsDiff(got.data, want.data);
        assert.ok(diff <= FP32_TOLERANCE, `${poolingStrategy} ${poolingLayer}: max |diff| ${diff}`);
      });
    }
  });
}

test('encoder - float16 stays within 1e-2 of the float32 reference', async () => {
  for (const poolingStrategy of ['REDUCE_MEAN', 'CLS_TOKEN', 'REDUCE_MAX'] as const) {
    await withEncoder({ poolingStrategy, poolingLayer: [-1, -2], fp16: true }, async (enc) => {
      const diff = maxAbsDiff((await enc.encode(SENTENCES)).data, (await expected(enc, SENTENCES)).data);
      assert.ok(diff <= FP16_TOLERANCE && diff > 0, `${poolingStrategy}: max |diff| ${diff}`);
    });
  }
});

test('encoder - the same weights from a checkpoint, safetensors and ONNX give the same vectors', async () => {
  const results = [];
  for (const model of [tiny.checkpointDir, tiny.huggingFaceDir, tiny.onnxPath]) {
    const enc = await Encoder.load({ model, graphTmpDir: tiny.cacheDir, threads: 1 });
    try {
      assert.equal(enc.config.poolingStrategy, 'REDUCE_MEAN');
      results.push({ model, out: await enc.encode(SENTENCES) });
    } finally {
      await enc.close();
    }
  }
  for (const r of results.slice(1)) {
    const diff = maxAbsDiff(results[0]!.out.data, r.out.data);
    assert.ok(diff <= SAME_WEIGHTS_TOLERANCE, `${r.model}: max |diff| ${diff}`);
  }
});

test('encoder - a foreign ONNX export with hidden-state output is pooled like the bertq graph', async () => {
  for (const poolingStrategy of ['REDUCE_MEAN', 'SEP_TOKEN', 'NONE'] as const) {
    const foreign = await Encoder.load({ model: tiny.foreignOnnxPath, poolingStrategy, poolingLayer: -1, threads: 1 });
    try {
      assert.equal(foreign.config.dims, tiny.weights.config.hiddenSize);
      await withEncoder({ poolingStrategy, poolingLayer: -1 }, async (native) => {
        const diff = maxAbsDiff((await foreign.encode(SENTENCES)).data, (await native.encode(SENTENCES)).data);
        assert.ok(diff <= FP32_TOLERANCE, `${poolingStrategy}: max |diff| ${diff}`);
      });
    } finally {
      await foreign.close();
    }
  }
});

test('encoder - a sentence encodes the same alone and inside a padded batch of 64 mixed lengths', async () => {
  const words = 'the quick brown fox jumps over lazy dog and then runs far away from home every day'.split(' ');
  const batch = Array.from(
    { length: 64 },
    (_, i) => words.slice(0, 1 + ((i * 7) % words.length)).join(' ') + (i % 3 ? '' : ' ||| and a second part'),
  );
  for (const poolingStrategy of ['REDUCE_MEAN', 'REDUCE_MAX', 'CLS_TOKEN', 'LAST_TOKEN', 'NONE'] as const) {
    await withEncoder({ poolingStrategy, maxSeqLen: 40 }, async (enc) => {
      const together = await enc.encode(batch);
      const width = together.data.length / batch.length;
      for (const i of [0, 5, 17, 42, 63]) {
        const alone = await enc.encode([batch[i]!]);
        const diff = maxAbsDiff(alone.data, together.data.subarray(i * width, (i + 1) * width));
        assert.ok(diff <= BATCH_INVARIANCE_TOLERANCE, `${poolingStrategy} row ${i}: max |diff| ${diff}`);
      }
    });
  }
});

test('encoder - NONE pads token-level output to maxSeqLen, and fixedEmbedLength to the model maximum', async () => {
  await withEncoder({ poolingStrategy: 'NONE', maxSeqLen: 25 }, async (enc) => {
    const out = await enc.encode(['hey you', 'whats up?']);
    assert.deepEqual(out.shape, [2, 25, tiny.weights.config.hiddenSize]);
    const h = tiny.weights.config.hiddenSize;
    // [CLS] hey you [SEP] (4 tokens with the real vocab): the positions after them are padding,
    // masked to zero as bert-as-service does
    const n = (await enc.tokenize(['hey you']))[0]!.length;
    assert.ok(n >= 4 && n < 25);
    assert.ok(out.data.subarray(n * h, 25 * h).every((v) => v === 0));
    assert.ok(out.data.subarray((n - 1) * h, n * h).some((v) => v !== 0));
  });
  await withEncoder({ poolingStrategy: 'NONE', maxSeqLen: null, fixedEmbedLength: true }, async (enc) => {
    const out = await enc.encode(['hey you']);
    assert.deepEqual(out.shape, [1, tiny.weights.config.maxPositionEmbeddings, tiny.weights.config.hiddenSize]);
  });
});

test('encoder - showTokens returns the tokens, isTokenized marks unknown tokens', async () => {
  await withEncoder({}, async (enc) => {
    const out = await enc.encode(
      [
        ['hello', 'world!'],
        ['thisis', 'it'],
      ],
      { isTokenized: true, showTokens: true },
    );
    assert.deepEqual(out.tokens, [
      ['[CLS]', 'hello', '[UNK]', '[SEP]'],
      ['[CLS]', '[UNK]', 'it', '[SEP]'],
    ]);
    assert.equal(out.shape[0], 2);
  });
});

test('encoder - normalize gives unit vectors', async () => {
  await withEncoder({ normalize: true }, async (enc) => {
    const out = await enc.encode(SENTENCES);
    const want = await expected(enc, SENTENCES, { normalize: true });
    assert.ok(maxAbsDiff(out.data, want.data) <= FP32_TOLERANCE);
  });
});

test('encoder - the second load of the same model and options comes from the graph cache', async () => {
  const cacheDir = await mkdtemp(join(tmpdir(), 'bertq-cache-'));
  try {
    const load = (opts: Partial<EncoderOptions>) =>
      Encoder.load({ model: tiny.checkpointDir, graphTmpDir: cacheDir, threads: 1, ...opts });
    const first = await load({});
    const second = await load({});
    const other = await load({ poolingLayer: -1 });
    try {
      assert.equal(first.config.graphCacheHit, false);
      assert.equal(second.config.graphCacheHit, true);
      assert.equal(second.config.graphPath, first.config.graphPath);
      assert.equal(other.config.graphCacheHit, false);
      assert.notEqual(other.config.graphPath, first.config.graphPath);
    } finally {
      await Promise.all([first.close(), second.close(), other.close()]);
    }
  } finally {
    await rm(cacheDir, { recursive: true, force: true });
  }
});

test('encoder - bad input gets typed errors that name the problem', async () => {
  await withEncoder({}, async (enc) => {
    await assert.rejects(enc.encode(['fine', '']), (e) => e instanceof BadRequestError && /1/.test(e.message));
    await assert.rejects(enc.encode(['fine', 42]), (e) => e instanceof BadRequestError && /1/.test(e.message));
    await assert.rejects(enc.encode('not a list'), (e) => e instanceof BadRequestError);
    await assert.rejects(
      enc.encode(['ok', 'bad \ud800 surrogate']),
      (e) => e instanceof BadRequestError && /1/.test(e.message),
    );
  });
  await withEncoder({ maxSeqLen: null }, async (enc) => {
    const long = Array.from({ length: 200 }, () => 'word').join(' ');
    await assert.rejects(enc.encode(['short', long]), (e) => e instanceof TooLongError && /64/.test(e.message));
  });
  // bert-as-service spells it NONE: the same as null, not "got NONE".
  await withEncoder({ maxSeqLen: 'NONE' }, async (enc) => assert.equal(enc.config.maxSeqLen, null));
  await assert.rejects(
    withEncoder({ maxSeqLen: 100 }, async () => {}),
    (e) => e instanceof TooLongError,
  );
  await assert.rejects(
    withEncoder({ poolingLayer: 7 }, async () => {}),
    (e) => e instanceof BadRequestError && /out of range/.test(e.message),
  );
  await assert.rejects(
    withEncoder({ poolingStrategy: 'AVERAGE' as never }, async () => {}),
    (e) => e instanceof BadRequestError && /AVERAGE/.test(e.message),
  );
});

test('encoder - a model folder with a missing file says which', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-broken-'));
  try {
    await cp(tiny.checkpointDir, dir, { recursive: true });
    await rm(join(dir, 'bert_model.ckpt.data-00000-of-00001'));
    await assert.rejects(
      Encoder.load({ model: dir, graphTmpDir: tiny.cacheDir }),
      (e) => e instanceof ModelError && e.message.includes(join(dir, 'bert_model.ckpt.data-00000-of-00001')),
    );
    await cp(tiny.checkpointDir, dir, { recursive: true }); // the shard is back; now the config goes
    await rm(join(dir, 'bert_config.json'));
    await assert.rejects(
      Encoder.load({ model: dir }),
      (e) => e instanceof ModelError && e.message.includes(join(dir, 'bert_config.json')),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("encoder - Google's real L-4/H-256 index without its data shard names the missing shard", async (t) => {
  if (!hasShared)
    return t.skip(`${SHARED_MODELS} is absent (it holds real TensorFlow files, on the bertq build machines only)`);
  const dir = await mkdtemp(join(tmpdir(), 'bertq-google-'));
  try {
    await cp(join(SHARED_MODELS, 'google-bert-L4-H256-index'), dir, { recursive: true });
    await cp(join(SHARED_MODELS, 'bert-base-uncased-vocab.txt'), join(dir, 'vocab.txt'));
    await assert.rejects(
      Encoder.load({ modelDir: dir }),
      (e) => e instanceof ModelError && e.message.includes('bert_model.ckpt.data-00000-of-00001'),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
