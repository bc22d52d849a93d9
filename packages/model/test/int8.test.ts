/**
 * precision int8: weight GEMMs become DynamicQuantizeMatMul over int8 weights. The oracle decides:
 * on the tiny model the float32 reference forward pass (reference.ts), on the BERT-base shape the
 * float32 graph (itself held to the reference in graph.test.ts). Every pooling strategy must keep
 * cosine ≥ 0.99 per row, the bar issue 11 sets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildBertGraph } from '../src/graph.js';
import { readOnnxMetadata } from '../src/onnx/metadata.js';
import { quantizePerColumn } from '../src/onnx/quantize.js';
import { createRuntime } from '../src/runtime.js';
import { referenceEncode } from '../src/reference.js';
import { bertBaseConfig, syntheticBertWeights, tinyBertConfig } from '../src/synthetic.js';
import { POOLING_STRATEGIES } from '../src/types.js';
import type { BertWeights, GraphOptions, PoolingStrategy } from '../src/types.js';

const MIN_COSINE = 0.99;

/** A padded batch of mixed lengths; row 0 is the longest. */
function batchOf(rows: number, seqLen: number, vocabSize: number) {
  const inputIds = new BigInt64Array(rows * seqLen);
  const attentionMask = new BigInt64Array(rows * seqLen);
  const tokenTypeIds = new BigInt64Array(rows * seqLen);
  for (let r = 0; r < rows; r++) {
    const len = r === 0 ? seqLen : 3 + ((r * 7) % (seqLen - 3));
    for (let t = 0; t < len; t++) {
      const id = t === 0 ? 101 : t === len - 1 ? 102 : 1000 + ((r * 7919 + t * 104729) % (vocabSize - 1000));
      inputIds[r * seqLen + t] = BigInt(id);
      attentionMask[r * seqLen + t] = 1n;
      tokenTypeIds[r * seqLen + t] = t > len / 2 ? 1n : 0n;
    }
  }
  return { rows, seqLen, inputIds, attentionMask, tokenTypeIds };
}

type Batch = ReturnType<typeof batchOf>;

async function runGraph(weights: BertWeights, options: GraphOptions, batch: Batch) {
  const rt = await createRuntime(buildBertGraph(weights, options), { threads: 2 });
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

/** The smallest cosine between matching vectors of width `dim` (rows, or tokens for NONE). */
function minCosine(a: Float32Array, b: Float32Array, dim: number): number {
  assert.equal(a.length, b.length);
  let min = 1;
  for (let off = 0; off < a.length; off += dim) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let i = off; i < off + dim; i++) {
      ab += a[i]! * b[i]!;
      aa += a[i]! ** 2;
      bb += b[i]! ** 2;
    }
    if (aa === 0 && bb === 0) continue; // a padded token of NONE: zero in both
    min = Math.min(min, ab / Math.sqrt(aa * bb));
  }
  return min;
}

test('int8 - per-column quantization: symmetric, within half a step of every weight', () => {
  const kernel = Float32Array.from({ length: 6 * 3 }, (_, i) => [0.5, -2, 0][i % 3]! * Math.sin(i + 1));
  const { values, scales } = quantizePerColumn(kernel, 6, 3);
  assert.equal(scales[2], 1, 'an all-zero column gets scale 1, not a division by zero');
  for (let i = 0; i < kernel.length; i++) {
    const j = i % 3;
    assert.ok(Math.abs(values[i]!) <= 127);
    assert.ok(Math.abs(values[i]! * scales[j]! - kernel[i]!) <= scales[j]! / 2 + 1e-7, `weight ${i}`);
  }
  // Each column's largest weight maps to ±127: the column's own range is used in full.
  for (let j = 0; j < 2; j++) {
    const col = Array.from({ length: 6 }, (_, r) => Math.abs(values[r * 3 + j]!));
    assert.equal(Math.max(...col), 127);
  }
});

const tiny = tinyBertConfig();
const tinyWeights = syntheticBertWeights(tiny, 7);
const tinyBatch = batchOf(6, 20, tiny.vocabSize);

for (const fused of [false, true]) {
  test(`int8 - tiny model${fused ? ' (fused ops)' : ''}: every pooling strategy within cosine 0.99 of the float32 reference`, async () => {
    for (const poolingStrategy of POOLING_STRATEGIES) {
      for (const poolingLayer of [[-1], [-1, -3]]) {
        const options: GraphOptions = { poolingStrategy, poolingLayer, precision: 'int8', normalize: false, fused };
        const got = await runGraph(tinyWeights, options, tinyBatch);
        const want = referenceEncode(tinyWeights, tinyBatch, { poolingStrategy, poolingLayer });
        assert.deepEqual(got.dims, want.shape);
        const cos = minCosine(got.data, want.data, got.dims.at(-1)!);
        assert.ok(cos >= MIN_COSINE, `${poolingStrategy} layers ${poolingLayer}: min cosine ${cos}`);
        // Quantization must show at all, or the graph is not int8.
        assert.ok(cos < 0.999999, `${poolingStrategy}: cosine ${cos} — identical to float32?`);
      }
    }
  });
}

test('int8 - the graph stores its weight matrices as int8 and runs them as int8 GEMMs', () => {
  const base: GraphOptions = {
    poolingStrategy: 'REDUCE_MEAN',
    poolingLayer: [-1],
    precision: 'float32',
    normalize: false,
    fused: false,
  };
  // No word embeddings: they stay float32 (a lookup, not a GEMM) and would hide the matrices' size.
  const small = syntheticBertWeights(tinyBertConfig({ vocabSize: 200 }), 3);
  const f32 = buildBertGraph(small, base);
  const int8 = buildBertGraph(small, { ...base, precision: 'int8' });
  const text = Buffer.from(int8).toString('latin1');
  const count = (op: string) => text.split(op).length - 1;
  // Per layer: q, k and v from one quantized input; the attention output and the two feed-forward GEMMs.
  assert.equal(count('DynamicQuantizeLinear'), tiny.numHiddenLayers, 'the layer input quantized once for q, k, v');
  assert.equal(count('MatMulIntegerToFloat'), 3 * tiny.numHiddenLayers, 'q, k, v');
  assert.equal(count('DynamicQuantizeMatMul'), 3 * tiny.numHiddenLayers, 'the other weight GEMMs');
  const f32Text = Buffer.from(f32).toString('latin1');
  assert.ok(!f32Text.includes('DynamicQuantizeMatMul') && !f32Text.includes('MatMulIntegerToFloat'));
  // 4 matrices per layer of 32·96, 32·32, 32·64, 64·32 weights: 4 bytes each in float32, 1 in int8.
  const matrixWeights = tiny.numHiddenLayers * (32 * 96 + 32 * 32 + 32 * 64 + 64 * 32);
  const columns = tiny.numHiddenLayers * (96 + 32 + 64 + 32);
  // 3 bytes saved per weight, less the per-column scales (4 bytes a column) and the names of the
  // int8 graph's extra nodes and initializers (well under 1 KiB a layer).
  const saved = f32.length - int8.length;
  assert.ok(saved >= 3 * matrixWeights - 4 * columns - 1024 * tiny.numHiddenLayers, `${f32.length} vs ${int8.length}`);
  assert.equal(JSON.parse(readOnnxMetadata(int8)['bertq.options']!).precision, 'int8');
});

test('int8 - BERT-base shape: every pooling strategy within cosine 0.99 of the float32 graph', async () => {
  // The encoder at full BERT-base size; a small vocabulary keeps the (float32, unquantized) lookup table small.
  const config = { ...bertBaseConfig(), vocabSize: 2000 };
  const weights = syntheticBertWeights(config, 11);
  const batch = batchOf(8, 25, config.vocabSize);
  const worst: Record<string, number> = {};
  for (const poolingStrategy of POOLING_STRATEGIES) {
    const options: GraphOptions = {
      poolingStrategy,
      poolingLayer: [-1],
      precision: 'float32',
      normalize: false,
      fused: false,
    };
    const f32 = await runGraph(weights, options, batch);
    const int8 = await runGraph(weights, { ...options, precision: 'int8' }, batch);
    worst[poolingStrategy] = minCosine(f32.data, int8.data, f32.dims.at(-1)!);
  }
  console.log(`# BERT-base int8 vs float32, min cosine per strategy: ${JSON.stringify(worst)}`);
  for (const [strategy, cos] of Object.entries(worst) as Array<[PoolingStrategy, number]>) {
    assert.ok(cos >= MIN_COSINE, `${strategy}: min cosine ${cos} (all: ${JSON.stringify(worst)})`);
    assert.ok(cos < 0.999999, `${strategy}: cosine ${cos} — identical to float32?`);
  }
});
