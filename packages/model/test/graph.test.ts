import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildBertGraph, outputDim } from '../src/graph.js';
import { createRuntime } from '../src/runtime.js';
import { referenceEncode } from '../src/reference.js';
import { syntheticBertWeights, tinyBertConfig } from '../src/synthetic.js';
import { POOLING_STRATEGIES } from '../src/types.js';
import type { GraphOptions, PoolingStrategy } from '../src/types.js';

const FP32_TOLERANCE = 1e-4;
const FP16_TOLERANCE = 1e-2;

const config = tinyBertConfig();
const weights = syntheticBertWeights(config, 7);

/** A padded batch of mixed lengths with random ids; row 0 is the longest. */
function randomBatch(rows: number, seqLen: number, seed: number) {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0), s / 2 ** 32);
  const inputIds = new BigInt64Array(rows * seqLen);
  const attentionMask = new BigInt64Array(rows * seqLen);
  const tokenTypeIds = new BigInt64Array(rows * seqLen);
  for (let r = 0; r < rows; r++) {
    const len = r === 0 ? seqLen : 3 + Math.floor(rand() * (seqLen - 2));
    const pairAt = rand() < 0.3 ? Math.floor(len / 2) : len;
    for (let t = 0; t < len; t++) {
      inputIds[r * seqLen + t] = BigInt(t === 0 ? 101 : t === len - 1 ? 102 : 1000 + Math.floor(rand() * 29000));
      attentionMask[r * seqLen + t] = 1n;
      tokenTypeIds[r * seqLen + t] = t >= pairAt ? 1n : 0n;
    }
  }
  return { rows, seqLen, inputIds, attentionMask, tokenTypeIds };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function runGraph(options: GraphOptions, batch: ReturnType<typeof randomBatch>) {
  const rt = await createRuntime(buildBertGraph(weights, options), { threads: 1 });
  try {
    const dims = [batch.rows, batch.seqLen];
    return await rt.run({
      input_ids: { data: batch.inputIds, dims },
      attention_mask: { data: batch.attentionMask, dims },
      token_type_ids: { data: batch.tokenTypeIds, dims },
    });
  } finally {
    await rt.close();
  }
}

const LAYER_CHOICES: number[][] = [[-1], [-2], [-config.numHiddenLayers], [-1, 0, -3]];
const batch = randomBatch(6, 20, 3);

for (const fused of [false, true]) {
  for (const poolingStrategy of POOLING_STRATEGIES) {
    test(`graph - ${poolingStrategy}${fused ? ' (fused ops)' : ''} matches the reference forward pass for every pooling layer choice`, async () => {
      for (const poolingLayer of LAYER_CHOICES) {
        const options: GraphOptions = { poolingStrategy, poolingLayer, precision: 'float32', normalize: false, fused };
        const got = await runGraph(options, batch);
        const want = referenceEncode(weights, batch, { poolingStrategy, poolingLayer });
        assert.deepEqual(got.dims, want.shape, `shape for layers ${poolingLayer}`);
        assert.equal(got.dims.at(-1), outputDim(config, options));
        const diff = maxAbsDiff(got.data, want.data);
        assert.ok(diff <= FP32_TOLERANCE, `layers ${poolingLayer}: max |diff| ${diff}`);
      }
    });
  }
}

for (const fused of [false, true]) {
  test(`graph - float16${fused ? ' (fused ops)' : ''} stays within 1e-2 of the float32 reference`, async () => {
    for (const poolingStrategy of ['REDUCE_MEAN', 'REDUCE_MAX', 'CLS_POOLED', 'NONE'] satisfies PoolingStrategy[]) {
      const options: GraphOptions = {
        poolingStrategy,
        poolingLayer: [-1, -2],
        precision: 'float16',
        normalize: false,
        fused,
      };
      const got = await runGraph(options, batch);
      const want = referenceEncode(weights, batch, { poolingStrategy, poolingLayer: [-1, -2] });
      const diff = maxAbsDiff(got.data, want.data);
      assert.ok(diff <= FP16_TOLERANCE, `${poolingStrategy}: max |diff| ${diff}`);
      assert.ok(diff > 0, 'float16 should differ from float32 at all (else the graph is not half precision)');
    }
  });
}

test('graph - normalize gives unit vectors equal to the normalised reference', async () => {
  const options: GraphOptions = {
    poolingStrategy: 'REDUCE_MEAN',
    poolingLayer: [-2],
    precision: 'float32',
    normalize: true,
    fused: true,
  };
  const got = await runGraph(options, batch);
  const want = referenceEncode(weights, batch, { poolingStrategy: 'REDUCE_MEAN', poolingLayer: [-2], normalize: true });
  assert.ok(maxAbsDiff(got.data, want.data) <= FP32_TOLERANCE);
  const d = got.dims[1]!;
  for (let r = 0; r < batch.rows; r++) {
    let sq = 0;
    for (let i = 0; i < d; i++) sq += got.data[r * d + i]! ** 2;
    assert.ok(Math.abs(Math.sqrt(sq) - 1) < 1e-5);
  }
});

test('graph - emits only the layers up to the deepest pooling layer', () => {
  const shallow = buildBertGraph(weights, {
    poolingStrategy: 'REDUCE_MEAN',
    poolingLayer: [0],
    precision: 'float32',
    normalize: false,
    fused: false,
  });
  const deep = buildBertGraph(weights, {
    poolingStrategy: 'REDUCE_MEAN',
    poolingLayer: [-1],
    precision: 'float32',
    normalize: false,
    fused: false,
  });
  // The word embeddings dominate both; each extra layer adds its weights.
  const perLayer = 4 * (4 * 32 * 32 + 2 * 32 * 64);
  assert.ok(deep.length - shallow.length >= 3 * perLayer, `${deep.length} vs ${shallow.length}`);
});

test('graph - a pooling layer outside the model is a typed error', () => {
  assert.throws(
    () =>
      buildBertGraph(weights, {
        poolingStrategy: 'REDUCE_MEAN',
        poolingLayer: [4],
        precision: 'float32',
        normalize: false,
        fused: false,
      }),
    (e: Error & { code?: string }) => e.code === 'BAD_REQUEST' && /out of range/.test(e.message),
  );
});
