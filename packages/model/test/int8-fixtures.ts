/**
 * What the int8 accuracy tests share: a padded batch of mixed lengths, one graph run, and the
 * smallest cosine between matching vectors. Also used by int8-avx2-check.ts under an emulated CPU.
 */
import assert from 'node:assert/strict';
import { buildBertGraph } from '../src/graph.js';
import { createRuntime } from '../src/runtime.js';
import type { BertWeights, GraphOptions } from '../src/types.js';

export const MIN_COSINE = 0.99;

/** A padded batch of mixed lengths; row 0 is the longest. */
export function batchOf(rows: number, seqLen: number, vocabSize: number) {
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

export type Batch = ReturnType<typeof batchOf>;

export async function runGraph(weights: BertWeights, options: GraphOptions, batch: Batch) {
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
export function minCosine(a: Float32Array, b: Float32Array, dim: number): number {
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
